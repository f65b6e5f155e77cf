package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// checkJSONTokens is the walk over encoding/json's tokens that checkJSON
// replaced: the reference its answers are held to.
func checkJSONTokens(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	type frame struct {
		keys   map[string]bool
		object bool
		expect bool
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return nil
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		isKey := top != nil && top.object && top.expect
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{':
				if top != nil && top.object {
					top.expect = true
				}
				stack = append(stack, &frame{keys: map[string]bool{}, object: true, expect: true})
			case '[':
				if top != nil && top.object {
					top.expect = true
				}
				stack = append(stack, &frame{})
			default:
				stack = stack[:len(stack)-1]
			}
			continue
		case string:
			if isKey {
				if top.keys[t] {
					return fmt.Errorf("%w %q", errDuplicateKey, t)
				}
				top.keys[t] = true
				top.expect = false
				continue
			}
		}
		if top != nil && top.object {
			top.expect = true
		}
	}
}

var checkJSONCases = map[string]bool{ // document: has a duplicate key
	`{}`:                                       false,
	`{"a":1,"b":2}`:                            false,
	`{"a":1,"a":2}`:                            true,
	`{"a":1,"A":2}`:                            false,
	`{"a":1,"\u0061":2}`:                       true,
	`{"a\"b":1,"a\"b":2}`:                      true,
	`{"a\\":1,"a\\":2}`:                        true,
	`{"é":1,"\u00e9":2}`:                       true,
	`{"a":{"a":1},"b":{"a":2}}`:                false,
	`{"a":{"b":1,"b":2}}`:                      true,
	`[{"a":1},{"a":1}]`:                        false,
	`[{"a":1,"a":1}]`:                          true,
	`{"a":["a","a"],"b":"a"}`:                  false,
	`{"a":[{"x":1}],"a":[]}`:                   true,
	`{"k":"v","v":"k","k2":"v"}`:               false,
	`{"a" : 1 , "b" : [ 1 , 2 ] , "a" : null}`: true,
	`{"a":1}{"a":1}`:                           false,
	`{"a":1,"a":2} {}`:                         true,
	`{"a":1,`:                                  false,
	`{"a`:                                      false,
	`]`:                                        false,
	`"a"`:                                      false,
	`{"commands":[{"tag":"register/v1","cmd":{"id":"x","type":"t"}},{"tag":"register/v1","cmd":{"id":"y","type":"t"}}]}`: false,
}

func TestCheckJSONFindsDuplicateKeysAsTheTokenWalkDid(t *testing.T) {
	many := func(dup bool) string {
		var b strings.Builder
		b.WriteString("{")
		for i := 0; i < 40; i++ {
			fmt.Fprintf(&b, `"k%d":%d,`, i, i)
		}
		if dup {
			b.WriteString(`"k7":0,`)
		}
		b.WriteString(`"end":1}`)
		return b.String()
	}
	cases := map[string]bool{many(false): false, many(true): true}
	for doc, dup := range checkJSONCases {
		cases[doc] = dup
	}
	for doc, dup := range cases {
		got, want := checkJSON([]byte(doc)), checkJSONTokens([]byte(doc))
		assert.Equal(t, want != nil, got != nil, "%s: the token walk says %v, checkJSON %v", doc, want, got)
		if dup {
			assert.True(t, errors.Is(got, errDuplicateKey), "%s", doc)
		}
	}
}

// Wherever the document is valid JSON, checkJSON and the token walk agree.
func FuzzCheckJSONAgreesWithTheTokenWalk(f *testing.F) {
	for doc := range checkJSONCases {
		f.Add([]byte(doc))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got := checkJSON(data)
		if !json.Valid(data) {
			return
		}
		want := checkJSONTokens(data)
		require.Equal(t, want != nil, got != nil, "%q: the token walk says %v, checkJSON %v", data, want, got)
	})
}

func BenchmarkCheckJSON(b *testing.B) {
	var cmds []string
	for i := 0; i < 256; i++ {
		cmds = append(cmds, fmt.Sprintf(`{"tag":"register/v1","cmd":{"id":"bench-%d","type":"cmp-w","address":"127.0.0.1","port":%d,"meta":{"zone":"a"}}}`, i, i+1))
	}
	docs := map[string][]byte{
		"register": []byte(`{"id":"bench-1234","type":"cmp-w","address":"127.0.0.1","port":1235}`),
		"batch256": []byte(`{"commands":[` + strings.Join(cmds, ",") + `]}`),
	}
	for name, doc := range docs {
		for impl, check := range map[string]func([]byte) error{"scan": checkJSON, "tokens": checkJSONTokens} {
			b.Run(name+"/"+impl, func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(doc)))
				for i := 0; i < b.N; i++ {
					if err := check(doc); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
