package simulate

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
)

// Point is a WGS 84 position in decimal degrees.
type Point struct {
	Lon float64
	Lat float64
}

// Polygon is a pasture: an outer ring and optional holes (ponds, sheds),
// each a closed list of positions as in GeoJSON (first == last).
type Polygon struct {
	Outer []Point
	Holes [][]Point
}

// DefaultPasture returns the built-in paddock: an irregular, roughly
// 19-hectare field in County Tipperary, Ireland, with a pond in it.
func DefaultPasture() Polygon {
	return Polygon{
		Outer: []Point{
			{-7.86412, 52.47311},
			{-7.85874, 52.47402},
			{-7.85511, 52.47215},
			{-7.85563, 52.46948},
			{-7.85902, 52.46861},
			{-7.86198, 52.46913},
			{-7.86467, 52.47077},
			{-7.86412, 52.47311},
		},
		Holes: [][]Point{{
			{-7.86021, 52.47105},
			{-7.85952, 52.47118},
			{-7.85931, 52.47074},
			{-7.86004, 52.47061},
			{-7.86021, 52.47105},
		}},
	}
}

// Contains reports whether p lies inside the outer ring and outside every
// hole (even-odd rule; points exactly on an edge may go either way).
func (pg Polygon) Contains(p Point) bool {
	if !ringContains(pg.Outer, p) {
		return false
	}
	for _, h := range pg.Holes {
		if ringContains(h, p) {
			return false
		}
	}
	return true
}

func ringContains(ring []Point, p Point) bool {
	in := false
	for i, j := 0, len(ring)-1; i < len(ring); j, i = i, i+1 {
		a, b := ring[i], ring[j]
		if (a.Lat > p.Lat) != (b.Lat > p.Lat) &&
			p.Lon < (b.Lon-a.Lon)*(p.Lat-a.Lat)/(b.Lat-a.Lat)+a.Lon {
			in = !in
		}
	}
	return in
}

// bounds returns the bounding box of the outer ring.
func (pg Polygon) bounds() (minP, maxP Point) {
	minP, maxP = pg.Outer[0], pg.Outer[0]
	for _, p := range pg.Outer[1:] {
		minP.Lon, minP.Lat = math.Min(minP.Lon, p.Lon), math.Min(minP.Lat, p.Lat)
		maxP.Lon, maxP.Lat = math.Max(maxP.Lon, p.Lon), math.Max(maxP.Lat, p.Lat)
	}
	return minP, maxP
}

// randomPoint returns a uniformly random point inside the polygon.
func (pg Polygon) randomPoint(r *rand.Rand) Point {
	lo, hi := pg.bounds()
	for range 10000 {
		p := Point{lo.Lon + r.Float64()*(hi.Lon-lo.Lon), lo.Lat + r.Float64()*(hi.Lat-lo.Lat)}
		if pg.Contains(p) {
			return p
		}
	}
	return pg.centroidish()
}

// centroidish returns a point inside the polygon: the vertex average when it
// is inside, else the first vertex nudged inwards. Validate guarantees a
// non-degenerate ring, so randomPoint practically never needs it.
func (pg Polygon) centroidish() Point {
	var c Point
	n := len(pg.Outer) - 1
	for _, p := range pg.Outer[:n] {
		c.Lon += p.Lon / float64(n)
		c.Lat += p.Lat / float64(n)
	}
	if pg.Contains(c) {
		return c
	}
	return pg.Outer[0]
}

const metresPerDegree = 111_320.0

// offset moves p by dx metres east and dy metres north.
func offset(p Point, dx, dy float64) Point {
	return Point{
		Lon: p.Lon + dx/(metresPerDegree*math.Cos(p.Lat*math.Pi/180)),
		Lat: p.Lat + dy/metresPerDegree,
	}
}

// ErrBadPolygon is wrapped by every pasture validation error.
var ErrBadPolygon = errors.New("bad pasture polygon")

// Validate checks that the rings are closed, have at least three distinct
// corners, hold valid coordinates and enclose a non-zero area.
func (pg Polygon) Validate() error {
	check := func(name string, ring []Point) error {
		if len(ring) < 4 {
			return fmt.Errorf("%w: %s: a ring needs at least 4 positions (3 corners and the closing one), got %d", ErrBadPolygon, name, len(ring))
		}
		if ring[0] != ring[len(ring)-1] {
			return fmt.Errorf("%w: %s: ring is not closed (first position %v, last %v)", ErrBadPolygon, name, ring[0], ring[len(ring)-1])
		}
		for i, p := range ring {
			if math.IsNaN(p.Lat) || math.IsNaN(p.Lon) || p.Lat < -90 || p.Lat > 90 || p.Lon < -180 || p.Lon > 180 {
				return fmt.Errorf("%w: %s[%d]: position [%v, %v] out of range (want [lon, lat] in degrees)", ErrBadPolygon, name, i, p.Lon, p.Lat)
			}
		}
		var area float64
		for i := 0; i+1 < len(ring); i++ {
			area += ring[i].Lon*ring[i+1].Lat - ring[i+1].Lon*ring[i].Lat
		}
		if math.Abs(area) < 1e-12 {
			return fmt.Errorf("%w: %s: ring encloses no area", ErrBadPolygon, name)
		}
		return nil
	}
	if err := check("coordinates[0]", pg.Outer); err != nil {
		return err
	}
	for i, h := range pg.Holes {
		if err := check(fmt.Sprintf("coordinates[%d]", i+1), h); err != nil {
			return err
		}
	}
	return nil
}

// ParsePolygon reads a GeoJSON Polygon or MultiPolygon geometry, a Feature
// holding one, or a FeatureCollection (the first polygon feature is used).
// Positions are [lon, lat] (a third element, altitude, is ignored).
func ParsePolygon(data []byte) (Polygon, error) {
	var obj struct {
		Type        string            `json:"type"`
		Coordinates json.RawMessage   `json:"coordinates"`
		Geometry    json.RawMessage   `json:"geometry"`
		Features    []json.RawMessage `json:"features"`
	}
	if err := json.Unmarshal(data, &obj); err != nil {
		return Polygon{}, fmt.Errorf("%w: not GeoJSON: %v", ErrBadPolygon, err)
	}
	switch obj.Type {
	case "Polygon", "MultiPolygon":
		var rings [][][]float64
		if obj.Type == "MultiPolygon" {
			var multi [][][][]float64
			if err := json.Unmarshal(obj.Coordinates, &multi); err != nil {
				return Polygon{}, fmt.Errorf("%w: coordinates: %v", ErrBadPolygon, err)
			}
			if len(multi) == 0 {
				return Polygon{}, fmt.Errorf("%w: coordinates: empty MultiPolygon", ErrBadPolygon)
			}
			rings = multi[0]
		} else if err := json.Unmarshal(obj.Coordinates, &rings); err != nil {
			return Polygon{}, fmt.Errorf("%w: coordinates: %v", ErrBadPolygon, err)
		}
		if len(rings) == 0 {
			return Polygon{}, fmt.Errorf("%w: coordinates: no ring", ErrBadPolygon)
		}
		var pg Polygon
		for i, r := range rings {
			ring := make([]Point, 0, len(r))
			for j, pos := range r {
				if len(pos) < 2 {
					return Polygon{}, fmt.Errorf("%w: coordinates[%d][%d]: a position needs [lon, lat]", ErrBadPolygon, i, j)
				}
				ring = append(ring, Point{Lon: pos[0], Lat: pos[1]})
			}
			if i == 0 {
				pg.Outer = ring
			} else {
				pg.Holes = append(pg.Holes, ring)
			}
		}
		return pg, pg.Validate()
	case "Feature":
		if len(obj.Geometry) == 0 || string(obj.Geometry) == "null" {
			return Polygon{}, fmt.Errorf("%w: Feature without geometry", ErrBadPolygon)
		}
		return ParsePolygon(obj.Geometry)
	case "FeatureCollection":
		for _, f := range obj.Features {
			var head struct {
				Geometry struct {
					Type string `json:"type"`
				} `json:"geometry"`
			}
			if json.Unmarshal(f, &head) == nil && (head.Geometry.Type == "Polygon" || head.Geometry.Type == "MultiPolygon") {
				return ParsePolygon(f)
			}
		}
		return Polygon{}, fmt.Errorf("%w: FeatureCollection holds no Polygon feature", ErrBadPolygon)
	case "":
		return Polygon{}, fmt.Errorf("%w: missing GeoJSON \"type\"", ErrBadPolygon)
	}
	return Polygon{}, fmt.Errorf("%w: GeoJSON type %q is not a polygon (want Polygon, MultiPolygon, Feature or FeatureCollection)", ErrBadPolygon, obj.Type)
}

// LoadPolygon reads a GeoJSON polygon file (see ParsePolygon).
func LoadPolygon(path string) (Polygon, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Polygon{}, err
	}
	pg, err := ParsePolygon(data)
	if err != nil {
		return Polygon{}, fmt.Errorf("%s: %w", path, err)
	}
	return pg, nil
}
