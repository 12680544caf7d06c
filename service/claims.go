package service

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	"github.com/edgeplane/edgeplane/internal/serviceproto"
)

// claimsOf turns a client access token's payload (a JSON object) into
// OpenConnection's claims, in the token's order: an array becomes one
// claim per item, a number or boolean its JSON text, an object its JSON;
// short JWT names become the .NET claim types the SDK reads
// (serviceproto.LongClaimType: "nameid" → NameIdentifier). The asrs.s.*
// and registered claims go along: the SDK takes the user id from
// asrs.s.uid and leaves the others out of Context.User itself.
func claimsOf(raw []byte) ([]serviceproto.Claim, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if t, err := d.Token(); err != nil || t != json.Delim('{') {
		return nil, fmt.Errorf("not a JSON object")
	}
	var out []serviceproto.Claim
	for d.More() {
		t, err := d.Token()
		if err != nil {
			return nil, err
		}
		name, _ := t.(string)
		typ := serviceproto.LongClaimType(name)
		var v json.RawMessage
		if err := d.Decode(&v); err != nil {
			return nil, err
		}
		if len(v) > 0 && v[0] == '[' {
			var items []json.RawMessage
			if err := json.Unmarshal(v, &items); err != nil {
				return nil, err
			}
			for _, it := range items {
				out = append(out, serviceproto.Claim{Type: typ, Value: claimValue(it)})
			}
			continue
		}
		out = append(out, serviceproto.Claim{Type: typ, Value: claimValue(v)})
	}
	if _, err := d.Token(); err != nil && err != io.EOF {
		return nil, err
	}
	return out, nil
}

// claimValue is a claim's value as a string: a JSON string unquoted,
// anything else as its JSON text.
func claimValue(v json.RawMessage) string {
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s
	}
	return string(bytes.TrimSpace(v))
}
