package web

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
)

// The admin API refuses what a hostile web page can make a logged-in browser
// send — a form post, a cross-site request — and serves same-origin JSON and
// non-browser clients (curl, scripts) as before. Requests go through a real
// listener so Host and Origin are what a browser would produce.
func TestAdminGuard(t *testing.T) {
	var served atomic.Int32
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusOK)
	})
	srv := httptest.NewServer(AdminGuard(inner))
	defer srv.Close()
	self := srv.URL // http://127.0.0.1:port, the server's own origin
	form := url.Values{"reason": {"pwned"}}.Encode()
	const reason = `{"reason":"street works"}`

	for _, tc := range []struct {
		name, method, ctype, body string
		headers                   map[string]string
		want                      int
	}{
		{"form post", "POST", "application/x-www-form-urlencoded", form, nil, http.StatusUnsupportedMediaType},
		{"multipart post", "POST", "multipart/form-data; boundary=x", "--x--", nil, http.StatusUnsupportedMediaType},
		{"text/plain post (a form's third encoding)", "POST", "text/plain", reason, nil, http.StatusUnsupportedMediaType},
		{"body without Content-Type", "POST", "", reason, nil, http.StatusUnsupportedMediaType},
		{"json lookalike media type", "POST", "application/jsonx", reason, nil, http.StatusUnsupportedMediaType},
		{"form post from the same origin", "POST", "application/x-www-form-urlencoded", form,
			map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": self}, http.StatusUnsupportedMediaType},

		{"cross-site JSON (Sec-Fetch-Site)", "POST", "application/json", reason,
			map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}, http.StatusForbidden},
		{"same-site is another origin too", "POST", "application/json", reason,
			map[string]string{"Sec-Fetch-Site": "same-site", "Origin": "http://127.0.0.1:1"}, http.StatusForbidden},
		{"foreign Origin without Sec-Fetch-Site", "POST", "application/json", reason,
			map[string]string{"Origin": "https://evil.example"}, http.StatusForbidden},
		{"cross-site form post", "POST", "application/x-www-form-urlencoded", form,
			map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}, http.StatusForbidden},
		{"cross-site bodyless reload", "POST", "", "",
			map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}, http.StatusForbidden},

		{"same-origin JSON", "POST", "application/json", reason,
			map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": self}, http.StatusOK},
		{"same-origin JSON, Origin only", "POST", "application/json; charset=utf-8", reason,
			map[string]string{"Origin": self}, http.StatusOK},
		{"non-browser JSON (curl)", "POST", "application/json", reason, nil, http.StatusOK},
		{"typed by the user in the address bar", "POST", "application/json", reason,
			map[string]string{"Sec-Fetch-Site": "none"}, http.StatusOK},
		{"bodyless POST (curl -X POST /-/reload)", "POST", "", "", nil, http.StatusOK},
		{"cross-site GET is read-only", "GET", "", "",
			map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := served.Load()
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			req, err := http.NewRequest(tc.method, srv.URL+"/api/v1/remediation/pause", body)
			if err != nil {
				t.Fatal(err)
			}
			if tc.ctype != "" {
				req.Header.Set("Content-Type", tc.ctype)
			}
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.want, b)
			}
			reached := served.Load() != before
			if reached != (tc.want == http.StatusOK) {
				t.Errorf("inner handler reached = %v for status %d", reached, tc.want)
			}
			if tc.want != http.StatusOK && !strings.Contains(string(b), `"error"`) {
				t.Errorf("refusal without a JSON error: %s", b)
			}
			if tc.want == http.StatusUnsupportedMediaType && resp.Header.Get("Accept-Post") != "application/json" {
				t.Errorf("415 without Accept-Post: %v", resp.Header)
			}
		})
	}
}
