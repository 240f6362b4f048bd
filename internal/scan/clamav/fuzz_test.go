package clamav

import (
	"bytes"
	"regexp"
	"testing"
)

var fuzzErr = regexp.MustCompile(`^fuzz\.hdb:[1-9][0-9]*: `)

func FuzzParseHashDB(f *testing.F) {
	f.Add([]byte("44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n"))
	f.Add([]byte("# comment\n\n3395856ce81f2b7382dee72602f798b642f14140:*:Sha1.Any:73\r\n"))
	f.Add([]byte("275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f:68:X:1:300\n"))
	f.Add([]byte("zz:1:x\n"))
	f.Add([]byte("44d88612fea8a8f36de82e1278abb02f: +68:E:x:\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := parseHashDB("fuzz.hdb", bytes.NewReader(data), func(s sig) {
			if want := map[kind]int{kindMD5: 16, kindSHA1: 20, kindSHA256: 32}[s.kind]; len(s.hash) != want {
				t.Fatalf("got %d-byte %s hash want %d", len(s.hash), s.kind, want)
			}
			if s.size != anySize && s.size <= 0 {
				t.Fatalf("got size %d want > 0 or any", s.size)
			}
			if s.name == "" {
				t.Fatal("got an empty name")
			}
		})
		if err != nil && !fuzzErr.MatchString(err.Error()) {
			t.Fatalf("got error %q want it to start with fuzz.hdb:LINE: ", err)
		}
	})
}

// FuzzScanMail scans what libclamav may take for a mail: whatever the
// bytes, the scan ends, within the bounds, without an error or a panic.
func FuzzScanMail(f *testing.F) {
	f.Add([]byte(attached([]byte(EICAR))))
	f.Add([]byte(eml("Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64", b64([]byte(attached(nil))))))
	f.Add([]byte(eml("Content-Type: multipart/digest; boundary=\"d\"", multipart("d", "\r\n", eicarPart))))
	f.Add([]byte("From a\n\nFrom b\nContent-Type: multipart/mixed;\nboundary=x\n\n---X\nContent-Transfer-Encoding: quoted-printable\n\n=41=\n"))
	e := mustLoad(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := e.scanFile(t.Context(), bytes.NewReader(data), int64(len(data)), "fuzz", newUnpacking(t.Context()), 0); err != nil {
			t.Fatalf("scan: %v", err)
		}
	})
}
