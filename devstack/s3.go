package devstack

import (
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3afero"
)

// S3 is the embedded S3 server: gofakes3 with objects stored as plain files
// under a directory (s3afero: <dir>/buckets/<bucket>/<key>, metadata in
// <dir>/metadata). Path-style addressing only. S3 is an http.Handler.
type S3 struct {
	// Fake is the gofakes3 server; Backend its storage.
	Fake    *gofakes3.GoFakeS3
	Backend gofakes3.Backend

	handler         http.Handler
	onObjectCreated func(bucket, key string, size int64, etag string, contentType string, meta map[string]string)
}

// NewS3 opens (or creates) the on-disk S3 store in dir and creates the
// given buckets if missing. onCreated may be nil; see
// Config.OnObjectCreated.
func NewS3(dir string, onCreated func(bucket, key string, size int64, etag string, contentType string, meta map[string]string), buckets ...string) (*S3, error) {
	fs, err := s3afero.FsPath(dir, s3afero.FsPathCreateAll)
	if err != nil {
		return nil, fmt.Errorf("s3: %w", err)
	}
	backend, err := s3afero.MultiBucket(fs)
	if err != nil {
		return nil, fmt.Errorf("s3: %w", err)
	}
	for _, b := range buckets {
		err := backend.CreateBucket(b)
		if err != nil && !gofakes3.HasErrorCode(err, gofakes3.ErrBucketAlreadyExists) {
			return nil, fmt.Errorf("s3: create bucket %s: %w", b, err)
		}
	}
	fake := gofakes3.New(backend, gofakes3.WithAutoBucket(false))
	return &S3{Fake: fake, Backend: backend, handler: fake.Server(), onObjectCreated: onCreated}, nil
}

// ServeHTTP implements http.Handler, reporting created objects to the
// OnObjectCreated hook.
func (s *S3) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.onObjectCreated == nil || !createsObject(r) {
		s.handler.ServeHTTP(w, r)
		return
	}
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	s.handler.ServeHTTP(sw, r)
	if sw.status < 200 || sw.status >= 300 {
		return
	}
	bucket, key, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	if !ok || key == "" {
		return
	}
	obj, err := s.Backend.HeadObject(bucket, key)
	if err != nil {
		return
	}
	if obj.Contents != nil {
		obj.Contents.Close()
	}
	contentType := ""
	meta := map[string]string{}
	for k, v := range obj.Metadata {
		switch {
		case strings.EqualFold(k, "Content-Type"):
			contentType = v
		case strings.HasPrefix(strings.ToLower(k), "x-amz-meta-"):
			meta[k] = v
		}
	}
	s.onObjectCreated(bucket, key, obj.Size, hex.EncodeToString(obj.Hash), contentType, meta)
}

// createsObject reports whether r, if it succeeds, creates an object: a PUT
// of an object that is not a multipart part (plain upload or copy), or the
// POST completing a multipart upload.
func createsObject(r *http.Request) bool {
	q := r.URL.Query()
	switch r.Method {
	case http.MethodPut:
		return !q.Has("partNumber") && !q.Has("tagging") && !q.Has("acl")
	case http.MethodPost:
		return q.Has("uploadId")
	}
	return false
}
