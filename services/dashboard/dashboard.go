// Package dashboard serves the web dashboard at "/" of billingd (issue #7,
// DESIGN §6): a server-rendered HTML shell (static/index.html), a small
// hand-written script (static/app.js) and a style sheet, all embedded in the
// binary, so nothing is built or downloaded at run time.
//
// The handler holds no data and checks no token: the page asks for a bearer
// token, keeps it in the tab's sessionStorage and calls the Connect JSON API
// with it, so the API's authorization (services/api/authz.go) applies to every
// figure the page shows. What the handler adds is a strict
// Content-Security-Policy (scripts, styles and requests to this origin only,
// no inline script) so that nothing but the embedded script ever sees the
// token.
package dashboard

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"sort"
	"strings"
	"time"
)

//go:embed static
var static embed.FS

// AssetsPrefix is the URL path under which the embedded files are served.
const AssetsPrefix = "/assets/"

// ContentSecurityPolicy is sent with every response of the dashboard.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"

// asset is one embedded file, ready to serve.
type asset struct {
	body        []byte
	contentType string
	etag        string
}

// Handler serves the dashboard: GET / is the page, GET /assets/NAME the
// embedded files; any other path is 404 and any method other than GET and
// HEAD 405. Mount it at "/" of the API's mux: every more specific pattern
// (the Connect procedures, /healthz, /metrics) keeps its own handler.
type Handler struct {
	index  []byte
	etag   string
	assets map[string]asset
}

var _ http.Handler = (*Handler)(nil)

// New builds the handler from the embedded files. It fails only when the
// embedded files are broken, which the package's tests rule out.
func New() (*Handler, error) {
	files, err := fs.Sub(static, "static")
	if err != nil {
		return nil, err
	}
	h := &Handler{assets: map[string]asset{}}
	var names []string
	err = fs.WalkDir(files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || p == "index.html" {
			return err
		}
		names = append(names, p)
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	// The assets' version is a digest of their content: the page links them
	// with ?v=VERSION, so a browser never mixes a cached script with a newer page.
	all := sha256.New()
	for _, name := range names {
		body, err := fs.ReadFile(files, name)
		if err != nil {
			return nil, err
		}
		ct := mime.TypeByExtension(path.Ext(name))
		if ct == "" {
			ct = http.DetectContentType(body)
		}
		sum := sha256.Sum256(body)
		h.assets[name] = asset{body: body, contentType: ct, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		fmt.Fprintf(all, "%s\x00%x\x00", name, sum)
	}
	version := hex.EncodeToString(all.Sum(nil)[:6])
	tmpl, err := template.ParseFS(files, "index.html")
	if err != nil {
		return nil, err
	}
	var page bytes.Buffer
	if err := tmpl.Execute(&page, struct{ Version string }{version}); err != nil {
		return nil, err
	}
	h.index = page.Bytes()
	sum := sha256.Sum256(h.index)
	h.etag = `"` + hex.EncodeToString(sum[:8]) + `"`
	return h, nil
}

// MustNew is New for program start: the embedded files are part of the
// binary, so an error is a build defect.
func MustNew() *Handler {
	h, err := New()
	if err != nil {
		panic("dashboard: " + err.Error())
	}
	return h
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Content-Security-Policy", ContentSecurityPolicy)
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "no-referrer")
	hdr.Set("X-Frame-Options", "DENY")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hdr.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	switch {
	case r.URL.Path == "/" || r.URL.Path == "/index.html":
		hdr.Set("Content-Type", "text/html; charset=utf-8")
		// The page is small and names the current assets: always revalidate.
		hdr.Set("Cache-Control", "no-cache")
		hdr.Set("ETag", h.etag)
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(h.index))
	case strings.HasPrefix(r.URL.Path, AssetsPrefix):
		a, ok := h.assets[strings.TrimPrefix(r.URL.Path, AssetsPrefix)]
		if !ok {
			http.NotFound(w, r)
			return
		}
		hdr.Set("Content-Type", a.contentType)
		hdr.Set("Cache-Control", "no-cache")
		hdr.Set("ETag", a.etag)
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
	default:
		http.NotFound(w, r)
	}
}
