package web

import (
	"encoding/json"
	"mime"
	"net/http"
)

// AdminGuard wraps the handlers of the admin API (pause, resume, reload):
// state-changing requests must come from the server's own origin or from a
// non-browser client, and a request that carries a body must declare it as
// application/json.
//
// Basic auth alone does not stop cross-site request forgery: a browser that
// has the login cached attaches it to a form any web page submits. Such a
// form can only send application/x-www-form-urlencoded, multipart/form-data
// or text/plain without a CORS preflight, and its request carries
// Sec-Fetch-Site: cross-site (or an Origin naming the other site), so either
// rule alone stops it; both are kept so an old browser or a proxy that drops
// one header is still covered.
//
// Safe methods (GET, HEAD, OPTIONS) pass unchanged. A POST without a body
// and without a Content-Type — `curl -X POST /-/reload`, as in Prometheus —
// passes the media-type rule: there is nothing to misinterpret.
func AdminGuard(h http.Handler) http.Handler {
	// CrossOriginProtection refuses a Sec-Fetch-Site other than same-origin
	// or none, and, without that header, an Origin whose host is not the
	// request's Host.
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		adminError(w, http.StatusForbidden, "cross-origin request refused: the admin API accepts requests from its own origin or from non-browser clients only")
	}))
	return cop.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !safeMethod(r.Method) && hasBody(r) {
			mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
			if err != nil || mt != "application/json" {
				w.Header().Set("Accept-Post", "application/json")
				adminError(w, http.StatusUnsupportedMediaType, "Content-Type must be application/json")
				return
			}
		}
		h.ServeHTTP(w, r)
	}))
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// hasBody reports whether the request declares content: a length other than
// zero (-1 is a chunked body of unknown length) or any Content-Type.
func hasBody(r *http.Request) bool {
	return r.ContentLength != 0 || r.Header.Get("Content-Type") != ""
}

func adminError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
