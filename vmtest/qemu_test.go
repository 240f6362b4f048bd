package main

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	// The test binary stands in for qemu when the qemu tests run it so.
	if mode := os.Getenv("VMTEST_FAKE_QEMU"); mode != "" {
		os.Exit(fakeQemu(mode, os.Args[1:]))
	}
	os.Exit(m.Run())
}

// fakeQemu behaves as qemu with a guest that does what mode says. It reads
// the plan out of the initramfs it is given, as the guest's init would.
func fakeQemu(mode string, args []string) int {
	i := slices.Index(args, "-initrd")
	if i < 0 || i+1 >= len(args) {
		fmt.Fprintln(os.Stderr, "fake qemu: no -initrd")
		return 1
	}
	data, err := os.ReadFile(args[i+1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake qemu:", err)
		return 1
	}
	files, err := parseNewc(data)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake qemu:", err)
		return 1
	}
	var p plan
	if err := json.Unmarshal([]byte(files[strings.TrimPrefix(planFile, "/")]), &p); err != nil {
		fmt.Fprintln(os.Stderr, "fake qemu: plan:", err)
		return 1
	}
	// What the real console shows first: the firmware, then the kernel.
	fmt.Print("\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS (version 1.16.2)\r\nBooting from ROM..[    0.000000] Linux version 6.1.0\r\n")
	for _, m := range p.Modules {
		fmt.Printf("module %s %d bytes\r\n", m, len(files[strings.TrimPrefix(m, "/")]))
	}
	for _, s := range p.Steps {
		fmt.Printf("step %s in %s\r\n", strings.Join(s.Argv, " "), s.Dir)
	}
	switch mode {
	case "status":
		status, _ := strconv.Atoi(os.Getenv("VMTEST_FAKE_STATUS"))
		fmt.Printf("%s%d\r\n", markerStatus, status)
		return int(statusCode(status))<<1 | 1
	case "nomarker":
		return int(statusCode(0))<<1 | 1
	case "panic":
		fmt.Print("[    1.7] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\r\n")
		return 0
	case "poweroff":
		return 0
	case "hang":
		time.Sleep(time.Hour)
	case "abort":
		fmt.Fprintln(os.Stderr, "qemu: kvm_buf_set_msrs: Assertion failed.")
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		time.Sleep(time.Hour)
	case "error":
		fmt.Fprintln(os.Stderr, "qemu-system-x86_64: -fsdev local: cannot open /nope")
		return 1
	}
	return 1
}

// parseNewc reads a newc archive into name -> contents.
func parseNewc(b []byte) (map[string]string, error) {
	files := map[string]string{}
	for off := 0; ; {
		if len(b) < off+110 || string(b[off:off+6]) != "070701" {
			return nil, fmt.Errorf("bad header at %d", off)
		}
		field := func(i int) int {
			v, _ := strconv.ParseUint(string(b[off+6+8*i:off+14+8*i]), 16, 32)
			return int(v)
		}
		size, namesize := field(6), field(11)
		name := string(b[off+110 : off+110+namesize-1])
		off = align4(off + 110 + namesize)
		if name == "TRAILER!!!" {
			return files, nil
		}
		files[name] = string(b[off : off+size])
		off = align4(off + size)
	}
}

// fakeKernel is a kernel whose modules directory holds modules.dep,
// modules.builtin and the module files, as Debian 6.12 has them.
func fakeKernel(t *testing.T) *kernel {
	t.Helper()
	dir := t.TempDir()
	write := func(name, data string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("modules.dep", depDebian612)
	write("modules.builtin", builtinDebian612)
	for _, m := range []string{"kernel/fs/9p/9p.ko.xz", "kernel/fs/netfs/netfs.ko.xz", "kernel/net/9p/9pnet.ko.xz", "kernel/net/9p/9pnet_virtio.ko.xz"} {
		write(m, "module "+m)
	}
	return &kernel{Name: "fake", Release: "6.12.0-fake", Image: "/nonexistent/vmlinux", Modules: dir,
		Config: map[string]bool{"CONFIG_MODULE_DECOMPRESS": true}}
}

// staticELF writes an ELF header with no program headers, so no
// interpreter: enough for the init check when the test binary itself is
// dynamically linked (go test -race).
func staticELF(t *testing.T) string {
	t.Helper()
	h := elf.Header64{Type: uint16(elf.ET_EXEC), Machine: uint16(elf.EM_X86_64), Version: uint32(elf.EV_CURRENT), Ehsize: 64}
	copy(h.Ident[:], elf.ELFMAG)
	h.Ident[elf.EI_CLASS], h.Ident[elf.EI_DATA], h.Ident[elf.EI_VERSION] = byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)
	var b bytes.Buffer
	if err := binary.Write(&b, binary.LittleEndian, h); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "init")
	if err := os.WriteFile(file, b.Bytes(), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := checkStatic(file); err != nil {
		t.Fatal(err)
	}
	return file
}

func fakeVM(t *testing.T, mode string, out *bytes.Buffer) vm {
	t.Helper()
	t.Setenv("VMTEST_FAKE_QEMU", mode)
	return vm{
		Qemu: os.Args[0], Kernel: fakeKernel(t), Init: staticELF(t), Accel: "tcg", CPUs: 1, MemMB: 256,
		WorkDir: "/work/main", Tmpfs: []string{"/tmp"}, Env: []string{"CI=false"},
		Steps:   []step{{Name: "true", Dir: "/", Argv: []string{"/bin/true", "arg"}}},
		Timeout: 20 * time.Second, Output: out,
	}
}

func TestRun(t *testing.T) {
	tests := []struct {
		name       string
		mode       string
		status     int
		timeout    time.Duration
		wantStatus int
		wantErr    error
		wantErrMsg string
	}{
		{name: "status 0", mode: "status", status: 0, wantStatus: 0},
		{name: "status 3", mode: "status", status: 3, wantStatus: 3},
		{name: "status 126 (init failed)", mode: "status", status: initFailed, wantStatus: initFailed},
		{name: "status 200", mode: "status", status: 200, wantStatus: 200},
		{name: "port without status line", mode: "nomarker", wantErr: errNoStatus},
		{name: "kernel panic", mode: "panic", wantErr: errPanic, wantErrMsg: "VFS: Unable to mount root"},
		{name: "power-off without status", mode: "poweroff", wantErr: errNoStatus},
		{name: "hang", mode: "hang", timeout: 500 * time.Millisecond, wantErr: errTimeout},
		{name: "qemu aborts", mode: "abort", wantErrMsg: "qemu died"},
		{name: "qemu refuses", mode: "error", wantErrMsg: "cannot open /nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			v := fakeVM(t, tt.mode, &out)
			t.Setenv("VMTEST_FAKE_STATUS", strconv.Itoa(tt.status))
			if tt.timeout != 0 {
				v.Timeout = tt.timeout
			}
			start := time.Now()
			got, err := v.Run(context.Background())
			if elapsed := time.Since(start); elapsed > v.Timeout+2*time.Second {
				t.Errorf("got an outcome after %s want one within the %s timeout", elapsed, v.Timeout)
			}
			if tt.wantErr != nil || tt.wantErrMsg != "" {
				if err == nil {
					t.Fatalf("got status %d want an error", got.Status)
				}
				if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
					t.Errorf("got error %v want %v", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErrMsg) {
					t.Errorf("got error %v want one containing %q", err, tt.wantErrMsg)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v want status %d\n%s", err, tt.wantStatus, out.String())
			}
			if got.Status != tt.wantStatus {
				t.Errorf("got status %d want %d", got.Status, tt.wantStatus)
			}
			// The console came through without the firmware's banner, and
			// the initramfs carried the plan and the modules.
			for _, want := range []string{
				"[    0.000000] Linux version 6.1.0\n",
				"module /modules/9pnet.ko.xz 32 bytes\n", // len("module kernel/net/9p/9pnet.ko.xz")
				"step /bin/true arg in /\n",
			} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("got console %q want it to contain %q", out.String(), want)
				}
			}
			if strings.Contains(out.String(), "SeaBIOS") || strings.Contains(out.String(), "\x1b") {
				t.Errorf("got the firmware banner in the console %q", out.String())
			}
		})
	}
}

func TestDecodeExit(t *testing.T) {
	tests := []struct {
		code     int
		wantByte byte
		wantOK   bool
	}{
		{code: 3, wantByte: 1, wantOK: true},
		{code: 5, wantByte: 2, wantOK: true},
		{code: 255, wantByte: 127, wantOK: true},
		{code: 0},  // power-off, reboot after a panic
		{code: 1},  // qemu's own error
		{code: 2},  // even: no isa-debug-exit
		{code: -1}, // killed by a signal
	}
	for _, tt := range tests {
		b, ok := decodeExit(tt.code)
		if b != tt.wantByte || ok != tt.wantOK {
			t.Errorf("decodeExit(%d): got %d, %v want %d, %v", tt.code, b, ok, tt.wantByte, tt.wantOK)
		}
	}
	for _, status := range []int{0, 1, 2, 125, 126, 127, 255, -1} {
		b, ok := decodeExit(int(statusCode(status))<<1 | 1)
		if !ok || b != statusCode(status) {
			t.Errorf("status %d through isa-debug-exit: got %d, %v", status, b, ok)
		}
		if b == 0 {
			t.Errorf("status %d: got byte 0, which reads as qemu's own exit code 1", status)
		}
	}
}

func TestCheckStatic(t *testing.T) {
	if err := checkStatic("/bin/sh"); err == nil || !strings.Contains(err.Error(), "CGO_ENABLED=0") {
		t.Errorf("checkStatic(/bin/sh): got %v want a dynamically linked error", err)
	}
}

func TestCompressedModulesNeedDecompress(t *testing.T) {
	v := vm{Kernel: fakeKernel(t)}
	v.Kernel.Config = map[string]bool{}
	if _, err := v.guestModuleFiles(); err == nil || !strings.Contains(err.Error(), "CONFIG_MODULE_DECOMPRESS") {
		t.Errorf("got %v want an error naming CONFIG_MODULE_DECOMPRESS", err)
	}
}

func TestArgs(t *testing.T) {
	v := vm{Kernel: &kernel{Image: "/k"}, Accel: "kvm", CPUs: 2, MemMB: 512, WorkDir: "/work/main"}
	got := strings.Join(v.args("/i.cpio"), " ")
	for _, want := range []string{
		"-accel kvm -cpu host", "-no-reboot", "-kernel /k -initrd /i.cpio",
		"isa-debug-exit,iobase=0xf4,iosize=1",
		"path=/,security_model=none,readonly=on",
		"path=/work/main,security_model=none,multidevs=remap",
		"panic=-1",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("got %q want it to contain %q", got, want)
		}
	}
	v.Accel, v.WorkDir = "tcg", ""
	got = strings.Join(v.args("/i.cpio"), " ")
	if !strings.Contains(got, "-accel tcg,thread=single -cpu max") || strings.Contains(got, tagWork) {
		t.Errorf("got %q want TCG with -cpu max and no work share", got)
	}
}
