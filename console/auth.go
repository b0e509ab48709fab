package console

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
)

// minTokenLen is the shortest operator token accepted: a guessable token
// is no token.
const minTokenLen = 16

// ErrNoToken is returned when the console has no operator token: it is
// read-only.
var ErrNoToken = errors.New("this console is read-only: no operator token is configured (--operator-token-file)")

// token reads the operator token file (at every action, so a rotated
// token counts at once).
func (s *Server) token() (string, error) {
	if s.cfg.TokenFile == "" {
		return "", ErrNoToken
	}
	b, err := os.ReadFile(s.cfg.TokenFile)
	if err != nil {
		return "", fmt.Errorf("operator token: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if len(t) < minTokenLen {
		return "", fmt.Errorf("operator token in %s is shorter than %d characters: refusing every action", s.cfg.TokenFile, minTokenLen)
	}
	return t, nil
}

// CheckTokenFile reports whether path holds a usable operator token.
func CheckTokenFile(path string) error {
	s := &Server{cfg: Config{TokenFile: path}}
	_, err := s.token()
	return err
}

func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if t, ok := strings.CutPrefix(h, "Bearer "); ok {
		return strings.TrimSpace(t)
	}
	return ""
}

// authorize checks the request's bearer token against the operator token
// and answers 401/403 (and logs the refusal) when it does not match.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, action string) bool {
	want, err := s.token()
	if err != nil {
		s.cfg.Log.Warn("console action refused", "action", action, "remote", r.RemoteAddr, "err", err)
		writeError(w, http.StatusForbidden, err)
		return false
	}
	got := bearer(r)
	if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
		s.cfg.Log.Warn("console action refused", "action", action, "remote", r.RemoteAddr, "err", "missing or wrong operator token")
		w.Header().Set("WWW-Authenticate", `Bearer realm="drover console"`)
		writeError(w, http.StatusUnauthorized, fmt.Errorf("%s needs the operator token (Authorization: Bearer TOKEN)", action))
		return false
	}
	return true
}

// operator is a short fingerprint of the request's token for the action
// log (never the token itself).
func (s *Server) operator(r *http.Request) string {
	t := bearer(r)
	if t == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(t))
	return "token:" + hex.EncodeToString(sum[:4])
}

// serveSession lets the page check a token before it offers actions.
func (s *Server) serveSession(w http.ResponseWriter, r *http.Request) {
	if !s.authorize(w, r, "sign in") {
		return
	}
	s.cfg.Log.Info("console action", "action", "sign in", "remote", r.RemoteAddr, "operator", s.operator(r))
	w.WriteHeader(http.StatusNoContent)
}
