package main

import (
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// depDebian612 is the part of Debian 6.12's modules.dep the init needs.
const depDebian612 = `kernel/fs/9p/9p.ko.xz: kernel/net/9p/9pnet.ko.xz kernel/fs/netfs/netfs.ko.xz
kernel/net/9p/9pnet.ko.xz:
kernel/fs/netfs/netfs.ko.xz:
kernel/net/9p/9pnet_virtio.ko.xz: kernel/net/9p/9pnet.ko.xz kernel/fs/netfs/netfs.ko.xz
kernel/drivers/block/loop.ko.xz:
`

const builtinDebian612 = `kernel/drivers/virtio/virtio.ko
kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci.ko
`

// depDebian61 is Debian 6.1's: uncompressed, virtio as modules.
const depDebian61 = `kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/fscache/fscache.ko kernel/fs/netfs/netfs.ko
kernel/net/9p/9pnet.ko:
kernel/fs/fscache/fscache.ko: kernel/fs/netfs/netfs.ko
kernel/fs/netfs/netfs.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko: kernel/drivers/virtio/virtio.ko
kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/char/some-dashed.ko:
`

func TestResolveModules(t *testing.T) {
	tests := []struct {
		name, dep, builtin string
		want               []string
		wantOrder          [][2]string // each pair: first before second
		wantErr            string
	}{
		{
			name: "6.12: virtio built in, compressed modules", dep: depDebian612, builtin: builtinDebian612,
			want: []string{"kernel/fs/9p/9p.ko.xz", "kernel/fs/netfs/netfs.ko.xz", "kernel/net/9p/9pnet.ko.xz", "kernel/net/9p/9pnet_virtio.ko.xz"},
			wantOrder: [][2]string{
				{"kernel/net/9p/9pnet.ko.xz", "kernel/net/9p/9pnet_virtio.ko.xz"},
				{"kernel/fs/netfs/netfs.ko.xz", "kernel/fs/9p/9p.ko.xz"},
			},
		},
		{
			name: "6.1: virtio as modules", dep: depDebian61, builtin: "",
			want: []string{
				"kernel/drivers/virtio/virtio.ko", "kernel/drivers/virtio/virtio_pci.ko",
				"kernel/drivers/virtio/virtio_pci_legacy_dev.ko", "kernel/drivers/virtio/virtio_pci_modern_dev.ko",
				"kernel/drivers/virtio/virtio_ring.ko", "kernel/fs/9p/9p.ko", "kernel/fs/fscache/fscache.ko",
				"kernel/fs/netfs/netfs.ko", "kernel/net/9p/9pnet.ko", "kernel/net/9p/9pnet_virtio.ko",
			},
			wantOrder: [][2]string{
				{"kernel/drivers/virtio/virtio.ko", "kernel/drivers/virtio/virtio_ring.ko"},
				{"kernel/drivers/virtio/virtio_ring.ko", "kernel/drivers/virtio/virtio_pci.ko"},
				{"kernel/fs/netfs/netfs.ko", "kernel/fs/fscache/fscache.ko"},
				{"kernel/fs/fscache/fscache.ko", "kernel/fs/9p/9p.ko"},
			},
		},
		{name: "missing module", dep: "kernel/net/9p/9pnet.ko:\n", builtin: builtinDebian612, wantErr: "module 9pnet_virtio: neither in modules.dep nor in modules.builtin"},
		{name: "missing dependency", dep: "kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko\nkernel/net/9p/9pnet_virtio.ko:\n", builtin: builtinDebian612, wantErr: "module 9pnet (needed by 9p): not in modules.dep"},
		{name: "cycle", dep: "kernel/fs/9p/9p.ko: kernel/x.ko\nkernel/x.ko: kernel/fs/9p/9p.ko\nkernel/net/9p/9pnet_virtio.ko:\n", builtin: builtinDebian612, wantErr: "dependency cycle"},
		{name: "malformed", dep: "kernel/fs/9p/9p.ko kernel/x.ko\n", wantErr: "modules.dep line 1: no colon"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			idx, err := parseModules(strings.NewReader(tt.dep), strings.NewReader(tt.builtin))
			var got []string
			if err == nil {
				got, err = idx.resolve(guestModules...)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if sorted := slices.Sorted(slices.Values(got)); !slices.Equal(sorted, tt.want) {
				t.Errorf("got %v want %v (in any order)", sorted, tt.want)
			}
			for _, o := range tt.wantOrder {
				if i, j := slices.Index(got, o[0]), slices.Index(got, o[1]); i < 0 || j < 0 || i > j {
					t.Errorf("got order %v want %s before %s", got, o[0], o[1])
				}
			}
		})
	}
}

func TestModuleName(t *testing.T) {
	tests := []struct{ file, want string }{
		{"kernel/fs/9p/9p.ko", "9p"},
		{"kernel/fs/9p/9p.ko.xz", "9p"},
		{"kernel/drivers/char/some-dashed.ko.zst", "some_dashed"},
		{"kernel/drivers/virtio/virtio_pci.ko.gz", "virtio_pci"},
	}
	for _, tt := range tests {
		if got := moduleName(tt.file); got != tt.want {
			t.Errorf("moduleName(%q): got %q want %q", tt.file, got, tt.want)
		}
	}
}

func TestParseDevname(t *testing.T) {
	tests := []struct {
		name, in string
		want     []devNode
		wantErr  bool
	}{
		{
			name: "debian 6.1",
			in:   "# Device nodes to trigger on-demand module loading.\nfuse fuse c10:229\nloop loop-control c10:237\ndm_mod mapper/control c10:236\nfloppy fd0 b2:0\n",
			want: []devNode{
				{"fuse", unix.S_IFCHR, 10, 229},
				{"loop-control", unix.S_IFCHR, 10, 237},
				{"mapper/control", unix.S_IFCHR, 10, 236},
				{"fd0", unix.S_IFBLK, 2, 0},
			},
		},
		{name: "empty", in: ""},
		{name: "bad type", in: "x y z10:1\n", wantErr: true},
		{name: "bad numbers", in: "x y c10-1\n", wantErr: true},
		{name: "escape", in: "x ../etc/x c1:1\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseDevname(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("got error %v want error %v", err, tt.wantErr)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %v want %v", got, tt.want)
			}
		})
	}
}
