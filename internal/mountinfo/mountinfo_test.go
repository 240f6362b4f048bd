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
