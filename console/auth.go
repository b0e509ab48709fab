package console

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strings"
)

// minTokenLen is the shortest operator token accepted: a guessable token
// is no token.
const minTokenLen = 16

// ErrNoToken is returned when the console has no operator token: it is
// read-only.
var ErrNoToken = errors.New("this console is read-only: no operator token is configured (--operator-token-file)")

// operatorToken is one accepted token and the operator it names.
type operatorToken struct {
	name, token string
}

// operatorName is what an operator may be called in the token file.
var operatorName = regexp.MustCompile(`^[A-Za-z0-9._@-]{1,64}$`)

// tokens reads the operator token file (at every action, so a rotated or
// added token counts at once). Each line is a token, or a name and a token
// separated by white space ("alice 3f9c..."), so the action log says who
// acted; blank lines and lines starting with # are skipped. A token
// shorter than minTokenLen, a bad name or a token given twice refuses
// every action.
func (s *Server) tokens() ([]operatorToken, error) {
	if s.cfg.TokenFile == "" {
		return nil, ErrNoToken
	}
	b, err := os.ReadFile(s.cfg.TokenFile)
	if err != nil {
		return nil, fmt.Errorf("operator token: %w", err)
	}
	var out []operatorToken
	seen := map[string]bool{}
	for i, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		ot := operatorToken{name: "operator"}
		switch len(f) {
		case 1:
			ot.token = f[0]
		case 2:
			ot.name, ot.token = f[0], f[1]
		default:
			return nil, fmt.Errorf("operator token file %s line %d: want TOKEN or NAME TOKEN: refusing every action", s.cfg.TokenFile, i+1)
		}
		switch {
		case !operatorName.MatchString(ot.name):
			return nil, fmt.Errorf("operator token file %s line %d: name %q: want letters, digits and ._@- (at most 64): refusing every action", s.cfg.TokenFile, i+1, ot.name)
		case len(ot.token) < minTokenLen:
			return nil, fmt.Errorf("operator token file %s line %d: token shorter than %d characters: refusing every action", s.cfg.TokenFile, i+1, minTokenLen)
		case seen[ot.token]:
			return nil, fmt.Errorf("operator token file %s line %d: a token given twice: refusing every action", s.cfg.TokenFile, i+1)
		}
		seen[ot.token] = true
		out = append(out, ot)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("operator token file %s holds no token: refusing every action", s.cfg.TokenFile)
	}
	return out, nil
}

// CheckTokenFile reports whether path holds usable operator tokens.
func CheckTokenFile(path string) error {
	s := &Server{cfg: Config{TokenFile: path}}
	_, err := s.tokens()
	return err
}

func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if t, ok := strings.CutPrefix(h, "Bearer "); ok {
		return strings.TrimSpace(t)
	}
	return ""
}

// authorize checks the request's bearer token against the operator tokens
// and answers 401/403 (and logs the refusal, with the caller's address)
// when none matches. It returns who acted: the token's operator name and a
// fingerprint of the token (never the token).
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, action string) (string, bool) {
	want, err := s.tokens()
	if err != nil {
		s.cfg.Log.Warn("console action refused", "action", action, "remote", r.RemoteAddr, "err", err)
		writeError(w, http.StatusForbidden, err)
		return "", false
	}
	got := bearer(r)
	name := ""
	for _, ot := range want { // every token compared, in constant time each
		if got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(ot.token)) == 1 {
			name = ot.name
		}
	}
	if name == "" {
		s.cfg.Log.Warn("console action refused", "action", action, "remote", r.RemoteAddr, "err", "missing or wrong operator token")
		w.Header().Set("WWW-Authenticate", `Bearer realm="drover console"`)
		writeError(w, http.StatusUnauthorized, fmt.Errorf("%s needs the operator token (Authorization: Bearer TOKEN)", action))
		return "", false
	}
	sum := sha256.Sum256([]byte(got))
	return name + " (token:" + hex.EncodeToString(sum[:4]) + ")", true
}

// serveSession lets the page check a token before it offers actions.
func (s *Server) serveSession(w http.ResponseWriter, r *http.Request) {
	who, ok := s.authorize(w, r, "sign in")
	if !ok {
		return
	}
	s.cfg.Log.Info("console action", "action", "sign in", "remote", r.RemoteAddr, "operator", who)
	w.WriteHeader(http.StatusNoContent)
}
