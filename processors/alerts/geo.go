package alerts

import "math"

const earthRadiusM = 6371008.8

// inPolygon reports whether p lies inside poly (ray casting on lat/lon;
// fine for fences far from the poles and the antimeridian).
func inPolygon(p Point, poly []Point) bool {
	in := false
	for i, j := 0, len(poly)-1; i < len(poly); j, i = i, i+1 {
		a, b := poly[i], poly[j]
		if (a.Lat > p.Lat) != (b.Lat > p.Lat) {
			x := (b.Lon-a.Lon)*(p.Lat-a.Lat)/(b.Lat-a.Lat) + a.Lon
			if p.Lon < x {
				in = !in
			}
		}
	}
	return in
}

// edgeDistance returns the distance in metres from p to the nearest edge of
// poly, on a local equirectangular projection around p (accurate to well
// under 1 % for fences a few kilometres across).
func edgeDistance(p Point, poly []Point) float64 {
	cos := math.Cos(p.Lat * math.Pi / 180)
	proj := func(q Point) (x, y float64) {
		return (q.Lon - p.Lon) * math.Pi / 180 * earthRadiusM * cos, (q.Lat - p.Lat) * math.Pi / 180 * earthRadiusM
	}
	best := math.Inf(1)
	for i, j := 0, len(poly)-1; i < len(poly); j, i = i, i+1 {
		ax, ay := proj(poly[j])
		bx, by := proj(poly[i])
		dx, dy := bx-ax, by-ay
		t := 0.0
		if l2 := dx*dx + dy*dy; l2 > 0 {
			t = math.Max(0, math.Min(1, -(ax*dx+ay*dy)/l2))
		}
		cx, cy := ax+t*dx, ay+t*dy
		best = math.Min(best, math.Hypot(cx, cy))
	}
	return best
}
