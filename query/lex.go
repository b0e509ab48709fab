package query

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
)

// ErrSyntax is wrapped by every parse error.
var ErrSyntax = errors.New("syntax error")

// Pos is a position in the parsed text: line and column, both 1-based,
// columns counted in runes.
type Pos struct{ Line, Col int }

func (p Pos) String() string { return fmt.Sprintf("line %d, column %d", p.Line, p.Col) }

// Error is a parse error at a position. It wraps ErrSyntax.
type Error struct {
	Pos Pos
	Msg string
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Pos, e.Msg) }

// Unwrap returns ErrSyntax.
func (e *Error) Unwrap() error { return ErrSyntax }

type tokKind int

const (
	tEOF tokKind = iota
	tIdent
	tKeyword
	tNumber
	tString
	tOp // punctuation and operators
)

type token struct {
	kind tokKind
	text string // keywords upper-cased; strings unquoted
	pos  Pos
}

func (t token) String() string {
	switch t.kind {
	case tEOF:
		return "end of input"
	case tString:
		return fmt.Sprintf("string %q", t.text)
	}
	return fmt.Sprintf("%q", t.text)
}

var keywords = map[string]bool{
	"SELECT": true, "FROM": true, "WHERE": true, "AS": true, "AND": true, "OR": true, "NOT": true,
	"IN": true, "BETWEEN": true, "IS": true, "NULL": true, "TRUE": true, "FALSE": true, "NIL": true,
	"GROUP": true, "BY": true,
}

// lex splits src into tokens.
func lex(src string) ([]token, error) {
	var toks []token
	rs := []rune(src)
	line, col := 1, 1
	i := 0
	adv := func(n int) {
		for k := 0; k < n && i < len(rs); k++ {
			if rs[i] == '\n' {
				line, col = line+1, 1
			} else {
				col++
			}
			i++
		}
	}
	for {
		for i < len(rs) && unicode.IsSpace(rs[i]) {
			adv(1)
		}
		if i >= len(rs) {
			toks = append(toks, token{kind: tEOF, pos: Pos{line, col}})
			return toks, nil
		}
		pos := Pos{line, col}
		c := rs[i]
		switch {
		case c == '-' && i+1 < len(rs) && rs[i+1] == '-': // comment to end of line
			for i < len(rs) && rs[i] != '\n' {
				adv(1)
			}
		case isIdentStart(c):
			j := i
			for j < len(rs) && isIdentPart(rs[j]) {
				j++
			}
			word := string(rs[i:j])
			if up := strings.ToUpper(word); keywords[up] {
				toks = append(toks, token{kind: tKeyword, text: up, pos: pos})
			} else {
				toks = append(toks, token{kind: tIdent, text: word, pos: pos})
			}
			adv(j - i)
		case c >= '0' && c <= '9' || c == '.' && i+1 < len(rs) && rs[i+1] >= '0' && rs[i+1] <= '9':
			j := i
			for j < len(rs) && (rs[j] >= '0' && rs[j] <= '9' || rs[j] == '.' || rs[j] == '_' ||
				rs[j] == 'e' || rs[j] == 'E' || (rs[j] == '-' || rs[j] == '+') && (rs[j-1] == 'e' || rs[j-1] == 'E')) {
				j++
			}
			toks = append(toks, token{kind: tNumber, text: string(rs[i:j]), pos: pos})
			adv(j - i)
		case c == '\'' || c == '"':
			var b strings.Builder
			j := i + 1
			for {
				if j >= len(rs) {
					return nil, &Error{pos, "unterminated string"}
				}
				if rs[j] == '\\' && j+1 < len(rs) {
					switch rs[j+1] {
					case 'n':
						b.WriteRune('\n')
					case 't':
						b.WriteRune('\t')
					default:
						b.WriteRune(rs[j+1])
					}
					j += 2
					continue
				}
				if rs[j] == c {
					if j+1 < len(rs) && rs[j+1] == c { // SQL doubled quote
						b.WriteRune(c)
						j += 2
						continue
					}
					break
				}
				b.WriteRune(rs[j])
				j++
			}
			toks = append(toks, token{kind: tString, text: b.String(), pos: pos})
			adv(j + 1 - i)
		default:
			op := ""
			for _, cand := range []string{"==", "!=", "<>", "<=", ">=", "&&", "||", "=", "<", ">", "!", "+", "-", "*", "/", "%", "(", ")", "[", "]", ",", "."} {
				if strings.HasPrefix(string(rs[i:min(i+2, len(rs))]), cand) {
					op = cand
					break
				}
			}
			if op == "" {
				return nil, &Error{pos, fmt.Sprintf("unexpected character %q", c)}
			}
			toks = append(toks, token{kind: tOp, text: op, pos: pos})
			adv(len([]rune(op)))
		}
	}
}

func isIdentStart(c rune) bool { return c == '_' || c == '$' || unicode.IsLetter(c) }
func isIdentPart(c rune) bool  { return c == '_' || unicode.IsLetter(c) || unicode.IsDigit(c) }
