// Package pyliteral parses Python literals. ultralytics writes its ONNX metadata values with
// Python's str(): `{0: 'person', 1: 'car'}`, `[640, 640]`, `32`, `detect`. They are Python
// literals, not JSON (single quotes, integer keys, True/None), so they get their own small parser.
package pyliteral

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Dict is a Python dict literal, its items in source order.
type Dict []Item

// Item is one key: value pair of a Dict.
type Item struct {
	Key, Value any
}

// Parse parses one Python literal: dict, list, tuple, int, float, str (single or
// double quotes with backslash escapes), True, False, None. Values come back as Dict,
// []any (list or tuple), int64, float64, string, bool and nil.
func Parse(s string) (any, error) {
	p := pyParser{s: s}
	v, err := p.value(0)
	if err != nil {
		return nil, err
	}
	p.space()
	if p.i != len(p.s) {
		return nil, p.errorf("unexpected %q after the value", p.rest())
	}
	return v, nil
}

type pyParser struct {
	s string
	i int
}

// maxPyDepth bounds nesting so that a hostile model cannot exhaust the stack.
const maxPyDepth = 64

func (p *pyParser) errorf(format string, args ...any) error {
	return fmt.Errorf("python literal at offset %d: %s", p.i, fmt.Sprintf(format, args...))
}

func (p *pyParser) rest() string {
	r := p.s[p.i:]
	if len(r) > 16 {
		r = r[:16] + "…"
	}
	return r
}

func (p *pyParser) space() {
	for p.i < len(p.s) && strings.IndexByte(" \t\r\n", p.s[p.i]) >= 0 {
		p.i++
	}
}

func (p *pyParser) value(depth int) (any, error) {
	if depth > maxPyDepth {
		return nil, p.errorf("nested deeper than %d", maxPyDepth)
	}
	p.space()
	if p.i >= len(p.s) {
		return nil, p.errorf("unexpected end, expected a value")
	}
	switch c := p.s[p.i]; {
	case c == '{':
		return p.dict(depth)
	case c == '[':
		return p.seq(depth, ']')
	case c == '(':
		return p.seq(depth, ')')
	case c == '\'' || c == '"':
		return p.str()
	case c == '-' || c == '+' || c == '.' || (c >= '0' && c <= '9'):
		return p.number()
	default:
		for _, w := range []struct {
			word string
			v    any
		}{{"True", true}, {"False", false}, {"None", nil}} {
			if strings.HasPrefix(p.s[p.i:], w.word) {
				p.i += len(w.word)
				return w.v, nil
			}
		}
		return nil, p.errorf("unexpected %q, expected a dict, list, tuple, number, string, True, False or None", p.rest())
	}
}

func (p *pyParser) dict(depth int) (any, error) {
	p.i++ // {
	d := Dict{}
	for {
		p.space()
		if p.i < len(p.s) && p.s[p.i] == '}' {
			p.i++
			return d, nil
		}
		k, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		switch k.(type) {
		case Dict, []any:
			return nil, p.errorf("dict key must be a number, string, bool or None")
		}
		p.space()
		if p.i >= len(p.s) || p.s[p.i] != ':' {
			return nil, p.errorf("expected ':' after a dict key")
		}
		p.i++
		v, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		d = append(d, Item{k, v})
		if !p.comma('}') {
			return nil, p.errorf("expected ',' or '}' in a dict")
		}
	}
}

func (p *pyParser) seq(depth int, end byte) (any, error) {
	p.i++ // [ or (
	l := []any{}
	for {
		p.space()
		if p.i < len(p.s) && p.s[p.i] == end {
			p.i++
			return l, nil
		}
		v, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		l = append(l, v)
		if !p.comma(end) {
			return nil, p.errorf("expected ',' or '%c'", end)
		}
	}
}

// comma consumes a ',' or leaves the closing byte for the caller's loop; false on anything else.
func (p *pyParser) comma(end byte) bool {
	p.space()
	if p.i >= len(p.s) {
		return false
	}
	if p.s[p.i] == ',' {
		p.i++
		return true
	}
	return p.s[p.i] == end
}

func (p *pyParser) number() (any, error) {
	start := p.i
	for p.i < len(p.s) && strings.IndexByte("+-0123456789._eExXabcdefABCDEFoObB", p.s[p.i]) >= 0 {
		// A sign is part of the number only at the start or after an exponent.
		if (p.s[p.i] == '+' || p.s[p.i] == '-') && p.i > start && p.s[p.i-1] != 'e' && p.s[p.i-1] != 'E' {
			break
		}
		p.i++
	}
	tok := strings.ReplaceAll(p.s[start:p.i], "_", "")
	if n, err := strconv.ParseInt(tok, 0, 64); err == nil {
		return n, nil
	}
	if f, err := strconv.ParseFloat(tok, 64); err == nil && !strings.ContainsAny(tok, "xXoObB") {
		return f, nil
	}
	p.i = start
	return nil, p.errorf("bad number %q", tok)
}

func (p *pyParser) str() (any, error) {
	q := p.s[p.i]
	p.i++
	var b strings.Builder
	for {
		if p.i >= len(p.s) {
			return nil, p.errorf("unterminated string")
		}
		c := p.s[p.i]
		switch {
		case c == q:
			p.i++
			return b.String(), nil
		case c == '\n':
			return nil, p.errorf("newline in a string")
		case c != '\\':
			b.WriteByte(c)
			p.i++
			continue
		}
		p.i++ // backslash
		if p.i >= len(p.s) {
			return nil, p.errorf("unterminated escape")
		}
		e := p.s[p.i]
		p.i++
		switch e {
		case '\\', '\'', '"':
			b.WriteByte(e)
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 'r':
			b.WriteByte('\r')
		case 'a':
			b.WriteByte('\a')
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'v':
			b.WriteByte('\v')
		case '0', '1', '2', '3', '4', '5', '6', '7':
			n := int(e - '0')
			for k := 0; k < 2 && p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '7'; k++ {
				n = n*8 + int(p.s[p.i]-'0')
				p.i++
			}
			b.WriteRune(rune(n))
		case 'x', 'u', 'U':
			width := map[byte]int{'x': 2, 'u': 4, 'U': 8}[e]
			if p.i+width > len(p.s) {
				return nil, p.errorf("short \\%c escape", e)
			}
			n, err := strconv.ParseUint(p.s[p.i:p.i+width], 16, 32)
			if err != nil || !utf8.ValidRune(rune(n)) {
				return nil, p.errorf("bad \\%c escape %q", e, p.s[p.i:p.i+width])
			}
			p.i += width
			b.WriteRune(rune(n))
		case '\n':
			// line continuation: nothing
		default:
			// Python keeps unknown escapes as written.
			b.WriteByte('\\')
			b.WriteByte(e)
		}
	}
}
