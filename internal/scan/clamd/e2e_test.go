package clamd

import (
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vigilsec/vigil/internal/scan"
	"github.com/vigilsec/vigil/internal/testutil"
)

const eicar = `X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`

// startClamd runs a real clamd (testutil.StartClamd) and returns it with
// its unix and TCP addresses.
func startClamd(t *testing.T, hdb string) (*exec.Cmd, string, string) {
	t.Helper()
	c := testutil.StartClamd(t, hdb)
	return c.Cmd, c.Unix, c.TCP
}

func TestRealClamd(t *testing.T) {
	bad := "vigil clamd end-to-end test sample\n"
	hdb := fmt.Sprintf("%x:%d:Eicar-Test-Signature\n%x:%d:Vigil.Test.Hash\n",
		md5.Sum([]byte(eicar)), len(eicar), md5.Sum([]byte(bad)), len(bad))
	cmd, unixAddr, tcpAddr := startClamd(t, hdb)

	tests := []struct {
		name    string
		content string
		want    scan.Result
	}{
		// clamd marks signatures of databases other than ClamAV's own.
		{"eicar", eicar, scan.Result{Infected: true, Signature: "Eicar-Test-Signature.UNOFFICIAL"}},
		{"hash signature", bad, scan.Result{Infected: true, Signature: "Vigil.Test.Hash.UNOFFICIAL"}},
		{"clean", "nothing to see here\n", scan.Result{}},
	}
	engines := map[string]*Engine{}
	for _, addr := range []string{unixAddr, tcpAddr} {
		e, err := New(Config{Address: addr, Timeout: 3 * time.Second, Conns: 2}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		engines[addr[:strings.Index(addr, ":")]] = e
		if v := e.Version(); !strings.HasPrefix(v, "ClamAV ") {
			t.Fatalf("got version %q want ClamAV ...", v)
		}
	}
	for network, e := range engines {
		for _, tt := range tests {
			t.Run(network+"/"+tt.name, func(t *testing.T) {
				// Twice: the second goes over the pooled session.
				for range 2 {
					got, err := e.Scan(context.Background(), tempFile(t, []byte(tt.content)))
					if err != nil || got != tt.want {
						t.Fatalf("got %+v, %v want %+v", got, err, tt.want)
					}
				}
			})
		}
	}
	t.Run("tcp/stream size limit", func(t *testing.T) {
		_, err := engines["tcp"].Scan(context.Background(), tempFile(t, make([]byte, 3<<20)))
		if !errors.Is(err, ErrSizeLimit) {
			t.Fatalf("got error %v want %v", err, ErrSizeLimit)
		}
	})
	t.Run("unix/large file by descriptor", func(t *testing.T) {
		// FILDES is not subject to StreamMaxLength.
		got, err := engines["unix"].Scan(context.Background(), tempFile(t, make([]byte, 3<<20)))
		if err != nil || got.Infected {
			t.Fatalf("got %+v, %v want clean", got, err)
		}
	})

	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	for network, e := range engines {
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		_, err := e.Scan(ctx, tempFile(t, []byte("x")))
		cancel()
		if err == nil {
			t.Fatalf("%s: got a scan with clamd killed want an error", network)
		}
		if d := time.Since(start); d > 3*time.Second+500*time.Millisecond {
			t.Fatalf("%s: got failure after %v want within the 3s timeout", network, d)
		}
		if err := e.Ping(context.Background()); err == nil {
			t.Fatalf("%s: got ping ok with clamd killed", network)
		}
	}
}
