package simulate

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPolygonContains(t *testing.T) {
	pg := DefaultPasture()
	lo, hi := pg.bounds()
	tests := []struct {
		name string
		p    Point
		want bool
	}{
		{name: "middle of the field", p: Point{-7.8585, 52.4720}, want: true},
		{name: "in the pond", p: Point{-7.85975, 52.47090}, want: false},
		{name: "west of the field", p: Point{lo.Lon - 0.001, 52.471}, want: false},
		{name: "north of the field", p: Point{-7.86, hi.Lat + 0.001}, want: false},
		{name: "bounding box corner outside the ring", p: Point{hi.Lon - 0.00001, hi.Lat - 0.00001}, want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := pg.Contains(tc.p); got != tc.want {
				t.Fatalf("Contains(%v) = %v, want %v", tc.p, got, tc.want)
			}
		})
	}
}

func TestDefaultPastureIsValid(t *testing.T) {
	if err := DefaultPasture().Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestRandomWalkStaysInside walks devices for 10k steps each, fast animals
// included, through a concave pasture and the default one.
func TestRandomWalkStaysInside(t *testing.T) {
	// An L-shaped (concave) field of roughly 200 m.
	lshape := Polygon{Outer: []Point{{0, 0}, {0.003, 0}, {0.003, 0.001}, {0.001, 0.001}, {0.001, 0.002}, {0, 0.002}, {0, 0}}}
	for name, pg := range map[string]Polygon{"default": DefaultPasture(), "concave": lshape} {
		t.Run(name, func(t *testing.T) {
			now := epoch
			for i := range 5 {
				d := newDevice("d", kindJSON, 42, i, pg, now)
				if !pg.Contains(d.pos) {
					t.Fatalf("device %d starts outside: %v", i, d.pos)
				}
				moved := 0
				for step := range 10_000 {
					prev := d.pos
					now = now.Add(30 * time.Second)
					d.advance(now, pg, 0)
					if !pg.Contains(d.pos) {
						t.Fatalf("device %d left the pasture at step %d: %v", i, step, d.pos)
					}
					if d.pos != prev {
						moved++
					}
				}
				if moved < 1000 {
					t.Errorf("device %d moved in only %d of 10000 steps", i, moved)
				}
			}
		})
	}
}

func TestParsePolygon(t *testing.T) {
	tests := []struct {
		name    string
		geojson string
		errSub  string
	}{
		{name: "polygon", geojson: `{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,0]]]}`},
		{name: "polygon with hole and altitude", geojson: `{"type":"Polygon","coordinates":[[[0,0,5],[4,0,5],[4,4,5],[0,4,5],[0,0,5]],[[1,1],[2,1],[2,2],[1,1]]]}`},
		{name: "feature", geojson: `{"type":"Feature","properties":{"name":"north paddock"},"geometry":{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,0]]]}}`},
		{name: "feature collection", geojson: `{"type":"FeatureCollection","features":[{"type":"Feature","geometry":{"type":"Point","coordinates":[0,0]}},{"type":"Feature","geometry":{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,0]]]}}]}`},
		{name: "multipolygon", geojson: `{"type":"MultiPolygon","coordinates":[[[[0,0],[1,0],[1,1],[0,0]]]]}`},
		{name: "not json", geojson: `paddock`, errSub: "not GeoJSON"},
		{name: "no type", geojson: `{"coordinates":[]}`, errSub: `missing GeoJSON "type"`},
		{name: "point", geojson: `{"type":"Point","coordinates":[0,0]}`, errSub: `"Point" is not a polygon`},
		{name: "open ring", geojson: `{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,1]]]}`, errSub: "coordinates[0]: ring is not closed"},
		{name: "too few positions", geojson: `{"type":"Polygon","coordinates":[[[0,0],[1,0],[0,0]]]}`, errSub: "at least 4 positions"},
		{name: "latitude out of range", geojson: `{"type":"Polygon","coordinates":[[[0,0],[1,95],[1,1],[0,0]]]}`, errSub: "coordinates[0][1]: position [1, 95] out of range"},
		{name: "no area", geojson: `{"type":"Polygon","coordinates":[[[0,0],[1,1],[2,2],[0,0]]]}`, errSub: "encloses no area"},
		{name: "bad hole", geojson: `{"type":"Polygon","coordinates":[[[0,0],[4,0],[4,4],[0,0]],[[1,1],[2,1]]]}`, errSub: "coordinates[1]"},
		{name: "short position", geojson: `{"type":"Polygon","coordinates":[[[0],[1,0],[1,1],[0,0]]]}`, errSub: "coordinates[0][0]: a position needs [lon, lat]"},
		{name: "feature without geometry", geojson: `{"type":"Feature","geometry":null}`, errSub: "without geometry"},
		{name: "collection without polygon", geojson: `{"type":"FeatureCollection","features":[]}`, errSub: "no Polygon feature"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pg, err := ParsePolygon([]byte(tc.geojson))
			if tc.errSub == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if !pg.Contains(pg.randomPoint(rand.New(rand.NewPCG(1, 2)))) {
					t.Fatal("random point outside the parsed polygon")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.errSub) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.errSub)
			}
		})
	}
}

func TestLoadPolygonNamesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "field.geojson")
	if err := os.WriteFile(path, []byte(`{"type":"Polygon","coordinates":[[[0,0],[1,0]]]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadPolygon(path)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "at least 4 positions") {
		t.Fatalf("error = %v", err)
	}
}
