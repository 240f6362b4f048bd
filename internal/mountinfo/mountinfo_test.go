package mountinfo

import "testing"

func TestUnescape(t *testing.T) {
	for in, want := range map[string]string{
		"/":                    "/",
		"/mnt/with\\040space":  "/mnt/with space",
		"/a\\011b\\012c\\134d": "/a\tb\nc\\d",
		"/trailing\\04":        "/trailing\\04", // too short to be an escape
		"/not\\999octal":       "/not\\999octal",
	} {
		if got := unescape(in); got != want {
			t.Errorf("unescape(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRead(t *testing.T) {
	ms, err := Read()
	if err != nil {
		t.Skipf("no mountinfo: %v", err)
	}
	root := false
	for _, m := range ms {
		if m.ID == 0 || m.Point == "" || m.Root == "" {
			t.Errorf("mount %+v: a field is missing", m)
		}
		root = root || m.Point == "/"
	}
	if !root {
		t.Errorf("no mount on / among %d", len(ms))
	}
}

func TestLocate(t *testing.T) {
	ms := []Mount{
		{ID: 1, Major: 8, Minor: 1, Root: "/", Point: "/"},
		{ID: 2, Major: 0, Minor: 30, Root: "/", Point: "/tmp"},
		{ID: 3, Major: 8, Minor: 1, Root: "/srv/www", Point: "/var/www"},
		{ID: 4, Major: 8, Minor: 1, Root: "/srv/www/static", Point: "/var/www/s"},
		{ID: 5, Major: 8, Minor: 1, Root: "/other", Point: "/var/www/s"}, // mounted over 4
	}
	dev := Mount{Major: 8, Minor: 1}.Dev()
	tests := []struct {
		p    string
		dev  uint64
		want string
		ok   bool
	}{
		{"/etc/passwd", dev, "/etc/passwd", true},
		{"/var/www", dev, "/srv/www", true},
		{"/var/www/index.html", dev, "/srv/www/index.html", true},
		{"/var/wwwx/f", dev, "/var/wwwx/f", true}, // not below /var/www
		{"/var/www/s/a.css", dev, "/other/a.css", true},
		{"/tmp/f", Mount{Major: 0, Minor: 30}.Dev(), "/f", true},
		{"/tmp/f", dev, "/tmp/f", true}, // /tmp's own directory on the root filesystem
		{"/x", Mount{Major: 9, Minor: 9}.Dev(), "", false},
	}
	for _, tt := range tests {
		got, ok := Locate(ms, tt.p, tt.dev)
		if got != tt.want || ok != tt.ok {
			t.Errorf("Locate(%q, %d) = %q, %v; want %q, %v", tt.p, tt.dev, got, ok, tt.want, tt.ok)
		}
	}
}

func TestUnder(t *testing.T) {
	tests := []struct {
		p, dir string
		want   bool
	}{
		{"/a", "/a", true},
		{"/a/b", "/a", true},
		{"/ab", "/a", false},
		{"/a", "/a/b", false},
		{"/x/y", "/", true},
		{"/", "/", true},
		{"x/y", "/", false},
	}
	for _, tt := range tests {
		if got := Under(tt.p, tt.dir); got != tt.want {
			t.Errorf("Under(%q, %q) = %v, want %v", tt.p, tt.dir, got, tt.want)
		}
	}
}
