package registry_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/drover-iot/drover/registry"
	"github.com/drover-iot/drover/registry/registrytest"
)

var goodCSV = `# herd of the north paddock
tenant,device_id,type,offline_timeout,label.herd,label.Paddock,alt.deveui,cert_fingerprint,secret
farm1,cow-1,collar,30m,north,p1,,,
farm1,cow-2,collar,,north,,70-b3-d5-7e-d0-00-00-01,,
farm1,gate-1,gate,,,,,` + "AB" + strings.Repeat(":AB", 31) + `,
farm1,cow-3,,,,,,,factory-secret-0042
`

func TestParseCSV(t *testing.T) {
	rows, err := registry.ParseCSV(strings.NewReader(goodCSV))
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 4 || rows[0].Line != 3 || rows[3].Line != 6 {
		t.Fatalf("rows %+v", rows)
	}
	c1, c2, g, c3 := rows[0].Device, rows[1].Device, rows[2].Device, rows[3].Device
	if c1.OfflineTimeout != 30*time.Minute || c1.Labels["herd"] != "north" || c1.Labels["Paddock"] != "p1" || c1.Type != "collar" || c1.NoSecret {
		t.Errorf("cow-1 %+v", c1)
	}
	if c2.AltIDs["deveui"] != "70-b3-d5-7e-d0-00-00-01" || len(c2.Labels) != 1 {
		t.Errorf("cow-2 %+v", c2)
	}
	if !g.NoSecret || len(g.CertFingerprints) != 1 {
		t.Errorf("gate-1 (certificate only) %+v", g)
	}
	if c3.Secret != "factory-secret-0042" {
		t.Errorf("cow-3 %+v", c3)
	}
}

func TestParseCSVErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []string // every line of the error
	}{
		{"empty", "", []string{"line 1: empty file"}},
		{"unknown column", "tenant,device_id,colour\n", []string{"line 1, field colour: unknown column"}},
		{"missing device_id", "tenant,type\nfarm1,collar\n", []string{"line 1, field device_id: required column missing"}},
		{"duplicate column", "tenant,device_id,TENANT\n", []string{"line 1, field tenant: column given twice"}},
		{"no rows", "tenant,device_id\n", []string{"line 2: no devices after the header"}},
		{"bad values", "tenant,device_id,offline_timeout\nfarm1,cow-1,5 minutes\nfarm1,cow-2,1h\nfarm1,cow-3,x\n",
			[]string{`line 2, field offline_timeout: "5 minutes" is not a duration`, `line 4, field offline_timeout: "x" is not a duration`}},
		{"wrong field count", "tenant,device_id\nfarm1,cow-1,extra\n", []string{"line 2: wrong number of fields"}},
		{"bare quote", "tenant,device_id\nfarm1,co\"w\n", []string{"line 2: bare \" in non-quoted-field"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rows, err := registry.ParseCSV(strings.NewReader(tc.in))
			if err == nil || rows != nil {
				t.Fatalf("accepted: %+v", rows)
			}
			var ce registry.CSVErrors
			if !errors.As(err, &ce) || len(ce) != len(tc.want) || !errors.Is(err, registry.ErrInvalid) {
				t.Fatalf("got %v, want %d problems", err, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.Contains(ce[i].Error(), w) {
					t.Errorf("problem %d: %q, want %q", i, ce[i].Error(), w)
				}
			}
		})
	}
}

// TestIntegrationImportExplain: problems the store finds (bad values,
// duplicates in the file, devices that exist) are named by line and field,
// and nothing is written.
func TestIntegrationImportExplain(t *testing.T) {
	e := registrytest.New(t)
	ctx := registrytest.Ctx(t)
	e.AddDevice(t, registry.NewDevice{Tenant: "farm1", ID: "cow-9"})
	in := "tenant,device_id,label.herd,alt.deveui\n" +
		"farm1,cow-1,north,0000000000000001\n" +
		"farm1,cow\u202e2,north,\n" +
		"farm1,cow-1,south,\n" +
		"farm1,cow-9,,\n" +
		"farm1,cow-4,,00-00-00-00-00-00-00-01\n" +
		"farm1,cow-5,\x1b[2J,\n"
	rows, err := registry.ParseCSV(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.Store.AddDevices(ctx, func() []registry.NewDevice {
		nds := make([]registry.NewDevice, len(rows))
		for i, r := range rows {
			nds[i] = r.Device
		}
		return nds
	}(), false)
	err = registry.Explain(rows, err)
	var ce registry.CSVErrors
	if !errors.As(err, &ce) {
		t.Fatalf("got %v", err)
	}
	want := []string{
		`line 3, field device_id: device id "cow\u202e2" has a character outside`,
		`line 4: device farm1/cow-1 duplicates line 2`,
		`line 5: device farm1/cow-9 already exists (active`,
		`line 6, field alt.deveui: deveui id 0000000000000001 duplicates line 2`,
		`line 7, field label.herd: has a control or format character U+001B at byte 0`,
	}
	if len(ce) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%v", len(ce), len(want), err)
	}
	for i, w := range want {
		if !strings.Contains(ce[i].Error(), w) {
			t.Errorf("problem %d: %q, want %q", i, ce[i].Error(), w)
		}
	}
	if n := len(e.View.Devices()); n != 1 {
		t.Fatalf("%d devices after a refused import, want 1", n)
	}
}
