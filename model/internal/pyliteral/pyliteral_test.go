package pyliteral_test

import (
	"reflect"
	"testing"

	"github.com/stardetr/stardetr/model/internal/pyliteral"
)

func TestParse(t *testing.T) {
	for _, c := range []struct {
		in   string
		want any
	}{
		{`{0: 'person', 1: 'car'}`, pyliteral.Dict{{int64(0), "person"}, {int64(1), "car"}}},
		{`{0: "it's", 1: 'say "hi"', 2: 'a\'b', 3: "tab\there"}`, pyliteral.Dict{{int64(0), "it's"}, {int64(1), `say "hi"`}, {int64(2), "a'b"}, {int64(3), "tab\there"}}},
		{`{0: 'caf\xe9', 1: '\u00fc', 2: 'b\\s', 3: 'ü', 4: '\101'}`, pyliteral.Dict{{int64(0), "café"}, {int64(1), "ü"}, {int64(2), `b\s`}, {int64(3), "ü"}, {int64(4), "A"}}},
		{`[640, 640]`, []any{int64(640), int64(640)}},
		{`(1, 3, 64, 64)`, []any{int64(1), int64(3), int64(64), int64(64)}},
		{`(1,)`, []any{int64(1)}},
		{` 32 `, int64(32)},
		{`-5`, int64(-5)},
		{`0.25`, 0.25},
		{`1e-3`, 0.001},
		{`{'batch': 1, 'half': False, 'nms': None, 'dynamic': True}`, pyliteral.Dict{{"batch", int64(1)}, {"half", false}, {"nms", nil}, {"dynamic", true}}},
		{`{'descr': '<f4', 'fortran_order': False, 'shape': (1, 300, 5), }`, pyliteral.Dict{{"descr", "<f4"}, {"fortran_order", false}, {"shape", []any{int64(1), int64(300), int64(5)}}}},
		{`{}`, pyliteral.Dict{}},
		{`[]`, []any{}},
		{"{0: 'a',\n 1: 'b'}", pyliteral.Dict{{int64(0), "a"}, {int64(1), "b"}}},
	} {
		got, err := pyliteral.Parse(c.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", c.in, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("Parse(%q) = %#v; want %#v", c.in, got, c.want)
		}
	}
}

func TestParseRejects(t *testing.T) {
	for _, in := range []string{
		``, `{0: person}`, `{0: 'a'`, `[1, 2`, `'unterminated`, `{0 'a'}`, `[1 2]`, `{[1]: 2}`,
		`'\x4'`, `12abc`, `{0: 'a'} extra`, "\"line\nbreak\"", string(make([]byte, 200)),
		`[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]`,
	} {
		if v, err := pyliteral.Parse(in); err == nil {
			t.Errorf("Parse(%q) = %#v; want an error", in, v)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(`{0: 'person', 1: "car\x41"}`)
	f.Add(`[640, (1, 2.5e3), None]`)
	f.Fuzz(func(t *testing.T, s string) {
		pyliteral.Parse(s) // must not panic or hang
	})
}
