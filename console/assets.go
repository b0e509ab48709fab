package console

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

// dist is the built front end (make console-assets rebuilds it from web/).
//
//go:embed all:dist
var dist embed.FS

// assetHandler serves the built front end: hashed files under /assets/ for
// a year, everything else (the page itself) never cached, and index.html
// for any path that is not a file, so a deep link loads the page.
func assetHandler() http.Handler {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		panic(err) // the embed pattern guarantees the directory
	}
	files := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := strings.TrimPrefix(r.URL.Path, "/")
		if p != "" {
			if f, err := sub.Open(p); err == nil {
				f.Close()
				if strings.HasPrefix(p, "assets/") {
					w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
				}
				files.ServeHTTP(w, r)
				return
			}
		}
		w.Header().Set("Cache-Control", "no-cache")
		http.ServeFileFS(w, r, sub, "index.html")
	})
}
