package simtest

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestClock(t *testing.T) {
	t0 := time.Date(2025, 6, 15, 10, 0, 0, 0, time.UTC)
	c := NewClock(t0)
	if got := c.Add(90 * time.Second); !got.Equal(t0.Add(90 * time.Second)) {
		t.Errorf("Add returned %v", got)
	}
	if got := c.Now(); !got.Equal(t0.Add(90 * time.Second)) {
		t.Errorf("Now = %v after Add", got)
	}
}

// The client sends what the simulator's routes check: the bearer token
// only when there is one, the content type only when given, the client
// credentials as a form.
func TestClientRequests(t *testing.T) {
	type seen struct{ method, path, auth, ctype, form string }
	var got seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		got = seen{r.Method, r.URL.Path, r.Header.Get("Authorization"), r.Header.Get("Content-Type"),
			r.PostForm.Get("client_id") + "/" + r.PostForm.Get("client_secret")}
		switch r.URL.Path {
		case "/oauth2/token":
			_, _ = w.Write([]byte(`{"access_token":"tok-1"}`))
		case "/APIjsonserver":
			_, _ = w.Write([]byte(`{"shareejson":{"response_state":"OK: logged in","authcookie":"cookie-1"}}`))
		default:
			_, _ = w.Write([]byte(`{}`))
		}
	}))
	defer srv.Close()
	c := &Client{T: t, URL: srv.URL, HTTP: srv.Client(), Creds: Credentials{ClientID: "id", ClientSecret: "secret"}}

	tests := []struct {
		name string
		call func()
		want seen
	}{
		{"token", func() {
			if tok := c.FetchToken(); tok != "tok-1" {
				t.Errorf("FetchToken = %q", tok)
			}
		}, seen{http.MethodPost, "/oauth2/token", "", "application/x-www-form-urlencoded", "id/secret"}},
		{"get without token", func() { c.Get("/location/v1/locations") },
			seen{http.MethodGet, "/location/v1/locations", "", "", "/"}},
		{"command with token", func() { c.Token = "tok-1"; c.Command("d-1", map[string]any{"command": "sync-device"}) },
			seen{http.MethodPost, "/device/v1/devices/d-1/commands", "Bearer tok-1", "application/json", "/"}},
		{"copri login", func() {
			if cookie := c.CopriLogin(); cookie != "cookie-1" {
				t.Errorf("CopriLogin = %q", cookie)
			}
		}, seen{http.MethodGet, "/APIjsonserver", "", "", "/"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.call()
			if got != tt.want {
				t.Errorf("request %+v, want %+v", got, tt.want)
			}
		})
	}
}
