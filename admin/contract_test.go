package admin_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgeplane/edgeplane/conn"
	"github.com/edgeplane/edgeplane/internal/auth"
	"github.com/edgeplane/edgeplane/internal/node"
	"github.com/edgeplane/edgeplane/internal/node/nodetest"
	"github.com/edgeplane/edgeplane/internal/testutil"
)

// The contract: Azure SignalR Service's published OpenAPI description of
// its data-plane REST API, version 2022-06-01 (a copy of
// ../shared/contracts/azure-signalr-rest-2022-06-01.json, the file the
// Management SDK of that version was written against).
const contractFile = "testdata/azure-signalr-rest-2022-06-01.json"

type openAPI struct {
	Paths       map[string]map[string]json.RawMessage `json:"paths"`
	Definitions map[string]struct {
		Properties map[string]json.RawMessage `json:"properties"`
	} `json:"definitions"`
}

type operation struct {
	OperationID string `json:"operationId"`
	Parameters  []struct {
		In       string `json:"in"`
		Name     string `json:"name"`
		Required bool   `json:"required"`
	} `json:"parameters"`
	Responses map[string]struct {
		Schema *struct {
			Ref string `json:"$ref"`
		} `json:"schema"`
		Headers map[string]json.RawMessage `json:"headers"`
	} `json:"responses"`
}

const contractKey = "contract-test-access-key-0123456789abcdef"

// TestRESTContract walks every operation of the OpenAPI description
// against a running node (an in-process node with an access key, real
// SignalR clients connected to it): each operation's route and method,
// with every parameter it declares, must answer one of its documented
// success codes; an operation documenting 404 must answer it, with the
// x-ms-error-code header (and an ErrorDetail body, HEAD aside) when what
// it names does not exist; and its "default" error response must be an
// ErrorDetail with x-ms-error-code, for a token for another URL (401) and
// for a bad parameter (400). Each operation runs for a hub named directly
// and through the application parameter. A parameter or operation the
// test does not know fails it: the file is the contract.
func TestRESTContract(t *testing.T) {
	raw, err := os.ReadFile(contractFile)
	if err != nil {
		t.Fatal(err)
	}
	var spec openAPI
	if err := json.Unmarshal(raw, &spec); err != nil {
		t.Fatal(err)
	}
	errorProps := spec.Definitions["ErrorDetail"].Properties
	if len(errorProps) == 0 {
		t.Fatal("the contract defines no ErrorDetail")
	}
	n := nodetest.Start(t, node.Config{
		Hubs: []node.Hub{{Name: "chat"}, {Name: "contoso_chat"}},
		Conn: conn.Config{AccessKey: contractKey},
	})
	base := restURL(n)

	paths := make([]string, 0, len(spec.Paths))
	for p := range spec.Paths {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	ops, seq := 0, 0
	for _, path := range paths {
		for method, rawOp := range spec.Paths[path] {
			if method == "parameters" {
				continue
			}
			var op operation
			if err := json.Unmarshal(rawOp, &op); err != nil {
				t.Fatal(err)
			}
			ops++
			for _, app := range []string{"", "contoso"} {
				seq++
				name := op.OperationID
				if app != "" {
					name += "/application"
				}
				t.Run(name, func(t *testing.T) {
					checkOperation(t, n, base, strings.ToUpper(method), path, &op, app, seq, errorProps)
				})
			}
		}
	}
	if ops != 19 {
		t.Errorf("the contract has %d operations, the test was written for 19", ops)
	}
}

// checkOperation runs one operation of the contract.
func checkOperation(t *testing.T, n *node.Node, base, method, path string, op *operation, app string, seq int, errorProps map[string]json.RawMessage) {
	hub := "chat"
	if app != "" {
		hub = "contoso_chat"
	}
	// Fresh state: a user with a connection in a group, the user a
	// member of the group.
	user, group := fmt.Sprintf("user-%d", seq), fmt.Sprintf("group %d", seq)
	c := connect(t, n, contractKey, hub, user)
	for _, p := range []string{"/groups/" + url.PathEscape(group) + "/connections/" + c.id, "/users/" + user + "/groups/" + url.PathEscape(group)} {
		if resp, body := restRequest(t, contractKey, "PUT", base+"/api/hubs/"+hub+p, "", nil); resp.StatusCode != 200 {
			t.Fatalf("setup: PUT %s: %d %s", p, resp.StatusCode, body)
		}
	}
	testutil.WaitUntil(t, 5*time.Second, "the connection to be in its group", func() bool {
		return n.Router().Hub(hub).GroupLen(group) == 1
	})

	// build makes the request's URL and body; missing names what does
	// not exist ("connection", "user", "group"), for the 404 case.
	build := func(missing string) (string, []byte) {
		p := path
		q := url.Values{}
		var body []byte
		for _, prm := range op.Parameters {
			var v string
			switch prm.Name {
			case "hub":
				v = "chat"
			case "connectionId":
				v = c.id
				if missing == "connection" {
					v = "no-such-connection"
				}
			case "user":
				v = user
				if missing == "user" {
					v = "no-such-user"
				}
			case "group":
				v = group
				if missing == "group" {
					v = "no-such-group"
				}
			case "api-version":
				v = "2022-06-01"
			case "application":
				v = app
			case "excluded":
				v = "no-such-connection"
			case "reason":
				v = "contract"
			case "ttl":
				v = "60"
			case "message":
				body = []byte(`{"target":"contract","arguments":[1,"two"]}`)
				continue
			default:
				t.Fatalf("parameter %q (in %s) of %s: the test does not know it", prm.Name, prm.In, op.OperationID)
			}
			switch prm.In {
			case "path":
				p = strings.ReplaceAll(p, "{"+prm.Name+"}", url.PathEscape(v))
			case "query":
				if v != "" {
					q.Add(prm.Name, v)
				}
			default:
				t.Fatalf("parameter %q in %s", prm.Name, prm.In)
			}
		}
		if strings.Contains(p, "{") {
			t.Fatalf("%s: path %q has parameters not declared", op.OperationID, p)
		}
		return base + p + "?" + q.Encode(), body
	}

	var success []int
	has404 := false
	for code := range op.Responses {
		if code == "404" {
			has404 = true
		}
		if n, err := strconv.Atoi(code); err == nil && n < 300 {
			success = append(success, n)
		}
	}
	if len(success) == 0 || strings.HasPrefix(path, "/api/hubs/") && op.Responses["default"].Headers["x-ms-error-code"] == nil {
		t.Fatalf("%s documents no success or no x-ms-error-code on errors", op.OperationID)
	}

	u, body := build("")
	resp, rb := restRequest(t, contractKey, method, u, "application/json", body)
	if !slices.Contains(success, resp.StatusCode) {
		t.Fatalf("%s %s: %d %s, want one of %v", method, u, resp.StatusCode, rb, success)
	}

	checkError := func(what string, resp *http.Response, rb []byte, status int) {
		t.Helper()
		if resp.StatusCode != status {
			t.Fatalf("%s: %d %s, want %d", what, resp.StatusCode, rb, status)
		}
		code := resp.Header.Get("x-ms-error-code")
		if code == "" {
			t.Fatalf("%s: no x-ms-error-code header", what)
		}
		if method == "HEAD" {
			return
		}
		var d map[string]any
		if err := json.Unmarshal(rb, &d); err != nil {
			t.Fatalf("%s: body %q is not JSON: %v", what, rb, err)
		}
		for k := range d {
			if errorProps[k] == nil {
				t.Fatalf("%s: body has %q, which ErrorDetail does not define", what, k)
			}
		}
		if d["code"] != code || d["message"] == "" {
			t.Fatalf("%s: ErrorDetail %v does not carry the header's code %q and a message", what, d, code)
		}
	}

	if has404 {
		missing := "connection"
		switch {
		case strings.Contains(path, "{connectionId}"):
		case strings.Contains(path, "/users/{user}/groups/{group}"):
			missing = "user" // the user is not in the group
		case strings.Contains(path, "{user}"):
			missing = "user"
		case strings.Contains(path, "{group}"):
			missing = "group"
		}
		u, body := build(missing)
		resp, rb := restRequest(t, contractKey, method, u, "application/json", body)
		checkError("404 for a missing "+missing, resp, rb, 404)
	}

	// default: a token for another URL, and a malformed api-version.
	if !strings.HasPrefix(path, "/api/hubs/") {
		return // health: open, with no failure to provoke
	}
	u, body = build("")
	req, _ := http.NewRequest(method, u, strings.NewReader(string(body)))
	tok, _ := auth.Sign(map[string]any{"aud": base + "/api/hubs/chat/somewhere/else", "exp": time.Now().Add(time.Minute).Unix()}, []byte(contractKey))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	rb = readAll(resp)
	checkError("a token for another URL", resp, rb, 401)

	bad := strings.Replace(u, "api-version=2022-06-01", "api-version=june", 1)
	resp, rb = restRequest(t, contractKey, method, bad, "application/json", body)
	checkError("a malformed api-version", resp, rb, 400)
}

func readAll(resp *http.Response) []byte {
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			return []byte(b.String())
		}
	}
}
