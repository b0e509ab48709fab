package decode

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxMessage bounds a rejection's human message, in bytes: values quoted
// in it are clipped one by one, and this is the last guard.
const MaxMessage = 2048

// Escape returns s with everything a terminal, a log viewer or an editor
// could interpret rather than show written as a Go escape: control
// characters (C0, DEL, C1: "\x1b", "\u009b"), Unicode format characters
// such as the bidi overrides ("\u202e"), other non-printable runes, and
// each byte of invalid UTF-8 ("\xff"). Printable text, non-ASCII letters
// included, is kept as it is, and s itself is returned (no allocation)
// when nothing needs escaping. Printable is strconv.IsPrint: the rule of
// Go's %q.
func Escape(s string) string {
	i := 0
	for i < len(s) {
		c := s[i]
		if c >= 0x20 && c < 0x7f {
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n <= 1 || !strconv.IsPrint(r) {
			break
		}
		i += n
	}
	if i == len(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	b.WriteString(s[:i])
	for i < len(s) {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			b.WriteString(`\x`)
			b.WriteByte(hexDigit[s[i]>>4])
			b.WriteByte(hexDigit[s[i]&0xf])
		case !strconv.IsPrint(r):
			q := strconv.QuoteRuneToASCII(r) // '\x1b', '\u202e', '\U000e0001'
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

const hexDigit = "0123456789abcdef"

// clip cuts s to at most n bytes at a rune boundary and marks the cut with
// "…".
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// quote renders a device-supplied string for a message: clipped to n bytes
// and quoted with Go's %q rules, so it is visibly delimited and nothing in
// it is interpreted.
func quote(s string, n int) string { return strconv.Quote(clip(s, n)) }

// formatNum renders a number as a device would have written it: plain
// digits up to 1e21 (an epoch time such as -62135596800 stays readable),
// exponent notation beyond.
func formatNum(f float64) string {
	if f > -1e21 && f < 1e21 {
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}
