package train

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// centralConfig is shaped like what the PHT central builder writes: compact
// JSON, an extra "id" key, numeric and string ids, null @context, upper-case
// and whitespace in a hex string (bytes.fromhex accepts both).
const centralConfig = `{"id":"ignored","source":{"type":"docker_repository","address":"harbor/master/python/base","tag":"latest"},` +
	`"creator":{"id":"007","rsa_public_key":"2d2d2d2d","paillier_public_key":null},"proposal_id":" 1_000 ","@id":"t-1","@context":null,` +
	`"session_id":"00 01 02 0A","route":[{"station":"s2","eco_system":"padme","rsa_public_key":"aa","index":"1","signature":null,"encrypted_key":null},` +
	`{"station":42,"eco_system":"tue","rsa_public_key":"bb","index":0,"signature":{"digest":"cc","signature":"dd"},"encrypted_key":"ee"}],` +
	`"file_list":["./entrypoint.py"],"hash":"ABCD","signature":"01","build":{"signature":"02","rsa_public_key":"03"},"result_hash":null,"result_signature":null}`

func TestParseCentralConfig(t *testing.T) {
	c, err := ParseConfig([]byte(centralConfig))
	if err != nil {
		t.Fatal(err)
	}
	if c.Creator.ID.String() != "7" || !c.Creator.ID.IsInt() {
		t.Fatalf("creator.id coerced to %q, want pydantic's 7", c.Creator.ID)
	}
	if c.ProposalID.String() != "1000" {
		t.Fatalf("proposal_id %q", c.ProposalID)
	}
	if b, err := c.SessionID.Bytes(); err != nil || !bytes.Equal(b, []byte{0, 1, 2, 10}) {
		t.Fatalf("session_id %x %v", b, err)
	}
	if s, err := c.Stop("42"); err != nil || s.Index != 0 {
		t.Fatalf("numeric station: %v", err)
	}
	if s, err := c.Stop("042"); err != nil || s.Index != 0 {
		t.Fatalf("zero-padded station id: %v", err)
	}
	if _, err := c.Stop("s3"); err == nil {
		t.Fatal("found a station that is not on the route")
	}
	if c.Route[0].Index != 1 {
		t.Fatal("index")
	}
	c.SortRoute()
	if c.Route[0].Station.String() != "42" || c.Route[1].Station.String() != "s2" {
		t.Fatal("route not sorted by index")
	}
	out, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	// Output order and nulls follow pydantic's .json(indent=2, by_alias=True).
	order := []string{`"source"`, `"creator"`, `"proposal_id": 1000`, `"@id"`, `"@context": null`, `"session_id"`, `"route"`, `"file_list"`, `"hash"`, `"signature"`, `"build"`, `"result_hash": null`, `"result_signature": null`}
	pos := 0
	for _, k := range order {
		i := strings.Index(string(out[pos:]), k)
		if i < 0 {
			t.Fatalf("%s missing or out of order in\n%s", k, out)
		}
		pos += i
	}
	if strings.Contains(string(out), `"id": "ignored"`) {
		t.Fatal("extra key kept")
	}
	if !strings.Contains(string(out), `"id": 7`) || !strings.Contains(string(out), `"branch": null`) {
		t.Fatalf("coerced id or null field missing:\n%s", out)
	}
	// And it parses back to the same thing.
	c2, err := ParseConfig(out)
	if err != nil {
		t.Fatal(err)
	}
	out2, _ := c2.Marshal()
	if !bytes.Equal(out, out2) {
		t.Fatal("marshal is not stable")
	}
}

func TestIntOrStringCoercion(t *testing.T) {
	for in, want := range map[string]string{
		`"123"`: "123", `"007"`: "7", `" 1_000 "`: "1000", `"-5"`: "-5", `"1__0"`: "1__0", `"_1"`: "_1",
		`"abc"`: "abc", `"12a"`: "12a", `42`: "42", `4.9`: "4", `-4.9`: "-4", `1e3`: "1000", `true`: "1", `""`: "",
		`"١٢"`: "١٢", // Python's int() takes Unicode digits; we keep such ids as strings
	} {
		var v IntOrString
		if err := json.Unmarshal([]byte(in), &v); err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if v.String() != want {
			t.Errorf("%s -> %q, want %q", in, v.String(), want)
		}
	}
	for _, in := range []string{`[]`, `{}`, `1e999`, `"x"x`} {
		var v IntOrString
		if err := json.Unmarshal([]byte(in), &v); err == nil {
			t.Errorf("%s accepted", in)
		}
	}
}

func TestConfigStrictness(t *testing.T) {
	edit := func(f func(m map[string]any)) []byte {
		var m map[string]any
		if err := json.Unmarshal([]byte(centralConfig), &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		b, _ := json.Marshal(m)
		return b
	}
	route := func(m map[string]any, i int) map[string]any { return m["route"].([]any)[i].(map[string]any) }
	for name, data := range map[string][]byte{
		"not json":           []byte("{"),
		"array":              []byte("[]"),
		"missing build":      edit(func(m map[string]any) { delete(m, "build") }),
		"missing @id":        edit(func(m map[string]any) { delete(m, "@id") }),
		"null route":         edit(func(m map[string]any) { m["route"] = nil }),
		"empty route":        edit(func(m map[string]any) { m["route"] = []any{} }),
		"eco system aac":     edit(func(m map[string]any) { route(m, 0)["eco_system"] = "aac" }),
		"duplicate index":    edit(func(m map[string]any) { route(m, 0)["index"] = 0 }),
		"index out of range": edit(func(m map[string]any) { route(m, 0)["index"] = 5 }),
		"duplicate station":  edit(func(m map[string]any) { route(m, 0)["station"] = 42 }),
		"bad hex hash":       edit(func(m map[string]any) { m["hash"] = "xyz" }),
		"numeric hash":       edit(func(m map[string]any) { m["hash"] = 12 }),
		"half result":        edit(func(m map[string]any) { m["result_hash"] = "aa" }),
		"bad encrypted key":  edit(func(m map[string]any) { route(m, 1)["encrypted_key"] = "zz" }),
		"index is a string":  edit(func(m map[string]any) { route(m, 0)["index"] = "one" }),
		"too big":            append([]byte(`{"x":"`), append(bytes.Repeat([]byte("a"), MaxConfigSize), '"', '}')...),
	} {
		if _, err := ParseConfig(data); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: got %v, want ErrConfig", name, err)
		}
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(centralConfig))
	f.Add([]byte(`{"route":[{"station":"1","index":0}]}`))
	f.Add([]byte(`{"creator":{"id":1e308}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data)
		if err != nil {
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("error without ErrConfig: %v", err)
			}
			return
		}
		// A parsed config marshals and parses back to the same bytes.
		out, err := c.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		c2, err := ParseConfig(out)
		if err != nil {
			t.Fatalf("re-parse: %v\n%s", err, out)
		}
		out2, _ := c2.Marshal()
		if !bytes.Equal(out, out2) {
			t.Fatalf("unstable:\n%s\n%s", out, out2)
		}
	})
}
