package clamav

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto"
	"crypto/md5"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// cvdTestKeys are generated once: 1024 bits for the header signature as
// ClamAV's, 2048 for the .info as cli_versig2 requires.
var cvdTestKeys = sync.OnceValues(func() (*rsa.PrivateKey, *rsa.PrivateKey) {
	k1, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		panic(err)
	}
	k2, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k1, k2
})

func pubKey(k *rsa.PrivateKey) rsaKey {
	return rsaKey{n: k.N, e: big.NewInt(int64(k.E))}
}

func testContainerKeys() containerKeys {
	k1, k2 := cvdTestKeys()
	return containerKeys{cvd: pubKey(k1), info: pubKey(k2)}
}

// signMD5 signs as ClamAV's signing server does for cli_versig: the MD5's
// 16 bytes as a number, raised to d.
func signMD5(k *rsa.PrivateKey, md5hex string) string {
	b, _ := hex.DecodeString(md5hex)
	m := new(big.Int).SetBytes(b)
	return encodeSig(new(big.Int).Exp(m, k.D, k.N))
}

// signPSS signs a SHA-256 digest for cli_versig2 with Go's own EMSA-PSS,
// an independent implementation of the scheme verifyPSS checks.
func signPSS(t testing.TB, k *rsa.PrivateKey, digest []byte) string {
	sig, err := rsa.SignPSS(rand.Reader, k, crypto.SHA256, digest, &rsa.PSSOptions{SaltLength: 32})
	if err != nil {
		t.Fatal(err)
	}
	return encodeSig(new(big.Int).SetBytes(sig))
}

// cvdBuild describes a container for buildContainer; the zero value plus
// members is a valid, signed, gzip'd container.
type cvdBuild struct {
	members     []member // listed in the .info
	extra       []member // in the archive, not in the .info
	plain       bool     // uncompressed tar, COPYING first (as .cld files)
	unsignedInf bool     // no DSIG line in the .info
	noInfo      bool
	infoVersion int    // when set, the .info header's version
	badSHA      string // member whose .info SHA-256 is wrong
	headerMD5   string // when set, replaces the body's MD5 in the header
	headerSig   string // when set, replaces the header signature
	cvdKey      *rsa.PrivateKey
	infoKey     *rsa.PrivateKey
}

const cvdTestFields = "06 Nov 2024 09-37 +0000:27451:2076543:90"

func buildContainer(t testing.TB, b cvdBuild) []byte {
	t.Helper()
	k1, k2 := cvdTestKeys()
	if b.cvdKey == nil {
		b.cvdKey = k1
	}
	if b.infoKey == nil {
		b.infoKey = k2
	}
	const stime = "1730885820"
	var info bytes.Buffer
	ver := 27451
	if b.infoVersion != 0 {
		ver = b.infoVersion
	}
	fmt.Fprintf(&info, "ClamAV-VDB:06 Nov 2024 09-37 +0000:%d:2076543:90:x:x:tester:%s\n", ver, stime)
	for _, m := range b.members {
		sum := sha256.Sum256(m.Data)
		if m.Name == b.badSHA {
			sum[0] ^= 1
		}
		fmt.Fprintf(&info, "%s:%d:%x\n", m.Name, len(m.Data), sum)
	}
	if !b.unsignedInf {
		d := sha256.Sum256(info.Bytes())
		fmt.Fprintf(&info, "DSIG:%s\n", signPSS(t, b.infoKey, d[:]))
	}

	var tarball bytes.Buffer
	tw := tar.NewWriter(&tarball)
	add := func(m member) {
		if err := tw.WriteHeader(&tar.Header{Name: m.Name, Mode: 0o644, Size: int64(len(m.Data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(m.Data); err != nil {
			t.Fatal(err)
		}
	}
	add(member{Name: "COPYING", Data: []byte("licence text\n")})
	if !b.noInfo {
		add(member{Name: "daily.info", Data: info.Bytes()})
	}
	for _, m := range append(slices.Clone(b.members), b.extra...) {
		add(m)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	body := tarball.Bytes()
	if !b.plain {
		var z bytes.Buffer
		zw := gzip.NewWriter(&z)
		zw.Write(body)
		zw.Close()
		body = z.Bytes()
	}
	sum := md5.Sum(body)
	md5hex := hex.EncodeToString(sum[:])
	sig := signMD5(b.cvdKey, md5hex)
	if b.headerMD5 != "" {
		md5hex = b.headerMD5
	}
	if b.headerSig != "" {
		sig = b.headerSig
	}
	head := fmt.Sprintf("ClamAV-VDB:%s:%s:%s:tester:%s", cvdTestFields, md5hex, sig, stime)
	if len(head) > cvdHeaderSize {
		t.Fatalf("header is %d bytes", len(head))
	}
	head += strings.Repeat(" ", cvdHeaderSize-len(head))
	return append([]byte(head), body...)
}

func writeContainer(t testing.TB, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

var cvdTestMembers = []member{
	{Name: "daily.hdb", Data: []byte("44d88612fea8a8f36de82e1278abb02f:68:Test.Hash\n")},
	{Name: "daily.ign2", Data: []byte("Some.Signature\n")},
}

func TestReadContainer(t *testing.T) {
	keys := testContainerKeys()
	tests := []struct {
		name   string
		file   string
		build  cvdBuild
		verify bool
	}{
		{"signed cvd", "daily.cvd", cvdBuild{members: cvdTestMembers}, true},
		{"signed cvd, unverified", "daily.cvd", cvdBuild{members: cvdTestMembers}, false},
		{"upper-case extension", "DAILY.CVD", cvdBuild{members: cvdTestMembers}, true},
		// freshclam's .cld: plain tar, header MD5 stale (ClamAV skips it).
		{"cld", "daily.cld", cvdBuild{members: cvdTestMembers, plain: true, headerMD5: strings.Repeat("0", 32)}, true},
		{"gzip'd cld", "daily.cld", cvdBuild{members: cvdTestMembers}, true},
		{"unsigned cud", "daily.cud", cvdBuild{members: cvdTestMembers, unsignedInf: true, headerSig: "x"}, true},
		{"unsigned cvd, unverified", "daily.cvd", cvdBuild{members: cvdTestMembers, unsignedInf: true, headerSig: "x"}, false},
		{"non-database extra member dropped", "daily.cvd", cvdBuild{members: cvdTestMembers, extra: []member{{Name: "README", Data: []byte("x")}}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeContainer(t, tt.file, buildContainer(t, tt.build))
			h, ms, err := readContainerWith(p, tt.verify, keys)
			if err != nil {
				t.Fatalf("got error %v want none", err)
			}
			wantName := strings.TrimSuffix(tt.file, filepath.Ext(tt.file))
			if h.Name != wantName || h.Version != 27451 || h.Sigs != 2076543 || h.FLevel != 90 ||
				h.Builder != "tester" || h.STime != 1730885820 || h.Time != "06 Nov 2024 09-37 +0000" {
				t.Errorf("got header %+v want name %s, version 27451, 2076543 sigs, flevel 90, builder tester, stime 1730885820", h, wantName)
			}
			var names []string
			for _, m := range ms {
				names = append(names, m.Name)
			}
			if want := []string{"daily.hdb", "daily.ign2"}; !slices.Equal(names, want) {
				t.Fatalf("got members %q want %q", names, want)
			}
			for i, m := range ms {
				if !bytes.Equal(m.Data, cvdTestMembers[i].Data) {
					t.Errorf("got %s = %q want %q", m.Name, m.Data, cvdTestMembers[i].Data)
				}
			}
		})
	}
}

func TestReadContainerRefused(t *testing.T) {
	keys := testContainerKeys()
	other, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	otherInfo, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	good := buildContainer(t, cvdBuild{members: cvdTestMembers})
	tampered := slices.Clone(good)
	tampered[len(tampered)-10] ^= 0x55
	tests := []struct {
		name    string
		file    string
		data    []byte
		verify  bool
		wantErr string
	}{
		{"tampered body", "daily.cvd", tampered, true, "body MD5 is"},
		{"tampered body, unverified", "daily.cvd", tampered, false, "body MD5 is"},
		{"bad header MD5", "daily.cvd", buildContainer(t, cvdBuild{members: cvdTestMembers, headerMD5: strings.Repeat("a", 32)}), true, "header says aaaa"},
		{"signed by another key", "daily.cvd", buildContainer(t, cvdBuild{members: cvdTestMembers, cvdKey: other}), true, "header signature: does not match"},
		{"signature not in alphabet", "daily.cvd", buildContainer(t, cvdBuild{members: cvdTestMembers, headerSig: "abc*"}), true, "header signature: character '*'"},
		{"truncated header", "daily.cvd", good[:300], true, "header: 300 of 512 bytes"},
		{"empty file", "daily.cvd", nil, false, "header: 0 of 512 bytes"},
		{"no magic", "daily.cvd", append([]byte("ClamAV-XYZ"), good[10:]...), true, "no ClamAV-VDB: magic"},
		{"header field not a number", "daily.cvd", append([]byte("ClamAV-VDB:t:x1"), good[15:]...), false, `version "x1`},
		{"truncated body", "daily.cld", good[:len(good)-40], false, "body:"},
		{".info signed by another key", "daily.cvd", buildContainer(t, cvdBuild{members: cvdTestMembers, infoKey: otherInfo}), true, "daily.info:4: signature: does not match"},
		{".info signed by another key, cld", "daily.cld", buildContainer(t, cvdBuild{members: cvdTestMembers, infoKey: otherInfo}), true, "daily.info:4: signature"},
		{".info unsigned", "daily.cvd", buildContainer(t, cvdBuild{members: cvdTestMembers, unsignedInf: true}), true, "no DSIG line"},
		{"member SHA-256", "daily.cvd", buildContainer(t, cvdBuild{members: cvdTestMembers, badSHA: "daily.hdb"}), true, "member daily.hdb: SHA-256 differs"},
		{"member SHA-256, cud", "daily.cud", buildContainer(t, cvdBuild{members: cvdTestMembers, badSHA: "daily.hdb"}), false, "SHA-256 differs"},
		{"unlisted database", "daily.cvd", buildContainer(t, cvdBuild{members: cvdTestMembers, extra: []member{{Name: "evil.ndb", Data: []byte("x")}}}), true, "evil.ndb is not listed"},
		{"no .info", "daily.cvd", buildContainer(t, cvdBuild{members: cvdTestMembers, noInfo: true}), false, "no .info member"},
		{".info header differs", "daily.cvd", buildContainer(t, cvdBuild{members: cvdTestMembers, infoVersion: 27450}), true, "differs from the container's"},
		{"path member", "daily.cud", buildContainer(t, cvdBuild{members: []member{{Name: "../x.hdb", Data: []byte("x")}}}), false, "paths are not allowed"},
		{"wrong extension", "daily.hdb", good, false, "not a container"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeContainer(t, tt.file, tt.data)
			_, ms, err := readContainerWith(p, tt.verify, keys)
			if err == nil {
				t.Fatalf("got %d members, no error, want error %q", len(ms), tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), p) {
				t.Fatalf("got error %q want it to contain %q and %s", err, tt.wantErr, p)
			}
		})
	}
}

// A container signed with a test key must fail against ClamAV's own key,
// and pass when the check is off: readContainer uses the published key.
func TestReadContainerPublishedKey(t *testing.T) {
	p := writeContainer(t, "daily.cvd", buildContainer(t, cvdBuild{members: cvdTestMembers}))
	if _, _, err := readContainer(p, true); err == nil || !strings.Contains(err.Error(), "header signature: does not match") {
		t.Fatalf("got error %v want a header signature mismatch", err)
	}
	if _, ms, err := readContainer(p, false); err != nil || len(ms) != 2 {
		t.Fatalf("got %d members, error %v want 2, none", len(ms), err)
	}
	// The .info key decodes to a 256-byte block (its modulus has 2047 bits).
	if c, i := clamavKeys.cvd.n.BitLen(), clamavKeys.info.n.BitLen(); c != 1024 || (i+7)/8 != pssPadLen {
		t.Fatalf("got key sizes %d and %d bits want 1024 and %d bytes", c, i, pssPadLen)
	}
}

func TestSigEncoding(t *testing.T) {
	tests := []struct {
		name string
		n    int64
		want string
	}{
		{"zero", 0, "a"},
		{"one digit", 63, "/"},
		{"little-endian digits", 64*2 + 1, "bc"},
	}
	identity := rsaKey{n: new(big.Int).Lsh(big.NewInt(1), 200), e: big.NewInt(1)}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := encodeSig(big.NewInt(tt.n)); got != tt.want {
				t.Fatalf("got %q want %q", got, tt.want)
			}
			b, err := decodeSig(tt.want, 8, identity)
			if err != nil {
				t.Fatal(err)
			}
			if got := new(big.Int).SetBytes(b).Int64(); got != tt.n {
				t.Fatalf("got %d want %d", got, tt.n)
			}
		})
	}
}

func TestIgnoreList(t *testing.T) {
	hdbLine := "44d88612fea8a8f36de82e1278abb02f:68:Test.Hash"
	var l ignoreList
	src := "# comment\nWin.Any\n" + "Test.Hash:" + md5Hex(hdbLine) + "\r\n" + "daily.ndb:12:Old.Style\n\n"
	if err := l.parse("local.ign2", strings.NewReader(src)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, sig, line string
		want            bool
	}{
		{"name only", "Win.Any", "whatever", true},
		{"name and matching line MD5", "Test.Hash", hdbLine, true},
		{"name and other line", "Test.Hash", hdbLine + "x", false},
		{"legacy .ign form", "Old.Style", "x", true},
		{"names match exactly", "Win.Any.1", "x", false},
		{"suffix is not a match", "Any", "x", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := l.drops(tt.sig, tt.line); got != tt.want {
				t.Fatalf("got %v want %v", got, tt.want)
			}
		})
	}
	if got := l.len(); got != 3 {
		t.Fatalf("got %d names want 3", got)
	}
	var nilList *ignoreList
	if nilList.drops("Win.Any", "") {
		t.Fatal("got a nil list dropping a signature")
	}
}

func TestIgnoreListErrors(t *testing.T) {
	tests := []struct{ name, src, wantErr string }{
		{"too many fields", "ok\na:b:c:d\n", "x.ign2:2: 4 fields"},
		{"empty name", ":" + strings.Repeat("0", 32) + "\n", "x.ign2:1: empty signature name"},
		{"short MD5", "Name:abc\n", "x.ign2:1: MD5 has 3 hex digits"},
		{"bad MD5", "Name:" + strings.Repeat("z", 32) + "\n", "x.ign2:1: MD5:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var l ignoreList
			err := l.parse("x.ign2", strings.NewReader(tt.src))
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Fatalf("got error %v want prefix %q", err, tt.wantErr)
			}
		})
	}
}

func FuzzReadCVD(f *testing.F) {
	f.Add([]byte("ClamAV-VDB:t:1:1:1:0:0:b:1"), false)
	f.Fuzz(func(t *testing.T, data []byte, verify bool) {
		// A .cld has no MD5 to stop mutated bodies before gzip and tar.
		name := "fuzz.cld"
		if verify {
			name = "fuzz.cvd"
		}
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		// ClamAV's keys: generating test keys under coverage instrumentation
		// would take the fuzzing time.
		_, ms, err := readContainer(p, verify)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "read container "+p+": ") {
				t.Fatalf("got error %q want it to name %s", err, p)
			}
			return
		}
		for _, m := range ms {
			if m.Name == "" || strings.Contains(m.Name, "/") {
				t.Fatalf("got member name %q", m.Name)
			}
		}
	})
}
