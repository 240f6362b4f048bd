package clamav

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeCVD writes a container signed with the test keys, with version set
// in both its header and its .info.
func writeCVD(t *testing.T, dir, name string, version string, members []member) string {
	t.Helper()
	b := cvdBuild{members: members}
	if version != "27451" {
		var v int
		for _, c := range version {
			v = v*10 + int(c-'0')
		}
		b.infoVersion = v
	}
	data := buildContainer(t, b)
	head := bytes.Replace(data[:cvdHeaderSize], []byte(":27451:"), []byte(":"+version+":"), 1)
	data = append(head, data[cvdHeaderSize:]...)
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func scanBytes(t *testing.T, e *Engine, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := e.Scan(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	return res.Signature
}

func TestLoadContainers(t *testing.T) {
	dir := t.TempDir()
	members := []member{
		{Name: "daily.hdb", Data: []byte(md5Hex("evil one") + ":8:Test.One\n" + md5Hex("evil two") + ":8:Test.Two\n")},
		{Name: "daily.ndb", Data: []byte("Test.Body:0:*:6576696c20626f6479\n")}, // "evil body"
		{Name: "daily.ign2", Data: []byte("Test.Two\n")},
	}
	writeCVD(t, dir, "daily.cvd", "27451", members)

	// Not signed by ClamAV: refused unless the check is off.
	if _, err := Load([]string{dir}, nil); err == nil || !strings.Contains(err.Error(), "daily.cvd") {
		t.Fatalf("container signed with a test key: got %v, want an error naming daily.cvd", err)
	}
	e, err := Options{SkipSignatureCheck: true}.Load([]string{dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ content, want string }{
		{"evil one", "Test.One"},
		{"evil two", ""}, // dropped by daily.ign2
		{"an evil body here", "Test.Body"},
	}
	for _, tt := range tests {
		if got := scanBytes(t, e, tt.content); got != tt.want {
			t.Errorf("scan %q: got %q, want %q", tt.content, got, tt.want)
		}
	}
	r := e.Report()
	if r.Ignored != 1 || len(r.Containers) != 1 || r.Containers[0].Version != 27451 || r.Containers[0].Name != "daily" {
		t.Errorf("report: ignored %d, containers %+v; want 1 ignored and daily v27451", r.Ignored, r.Containers)
	}
	if s := r.String(); !strings.Contains(s, "daily.cvd v27451") || !strings.Contains(s, "1 ignored") {
		t.Errorf("report %q lacks the container or the ignored count", s)
	}
}

// Of daily.cvd and daily.cld the newer is read, the .cld on a tie.
func TestLoadNewestContainer(t *testing.T) {
	sig := func(name string) []member {
		return []member{{Name: "daily.hdb", Data: []byte(md5Hex("evil file") + ":9:" + name + "\n")}}
	}
	tests := []struct {
		name       string
		cvd, cld   string
		wantSig    string
		wantLoaded string
	}{
		{"cvd newer", "27452", "27451", "From.CVD", "daily.cvd"},
		{"cld newer", "27451", "27452", "From.CLD", "daily.cld"},
		{"tie goes to cld", "27451", "27451", "From.CLD", "daily.cld"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeCVD(t, dir, "daily.cvd", tt.cvd, sig("From.CVD"))
			writeCVD(t, dir, "daily.cld", tt.cld, sig("From.CLD"))
			e, err := Options{SkipSignatureCheck: true}.Load([]string{dir}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := scanBytes(t, e, "evil file"); got != tt.wantSig {
				t.Errorf("got %q, want %q", got, tt.wantSig)
			}
			if c := e.Report().Containers; len(c) != 1 || c[0].File != tt.wantLoaded {
				t.Errorf("containers: got %+v, want only %s", c, tt.wantLoaded)
			}
		})
	}
}

// A tampered container fails the load: the caller keeps its old engine.
func TestLoadTamperedContainer(t *testing.T) {
	dir := t.TempDir()
	p := writeCVD(t, dir, "daily.cvd", "27451", []member{{Name: "daily.hdb", Data: []byte(md5Hex("x") + ":1:X\n")}})
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)-10] ^= 0xff
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := (Options{SkipSignatureCheck: true}).Load([]string{p}, nil); err == nil || !strings.Contains(err.Error(), p) {
		t.Errorf("tampered container: got %v, want an error naming %s", err, p)
	}
}
