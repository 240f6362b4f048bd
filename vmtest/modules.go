package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// guestModules are what the init needs before it can mount the host's root:
// 9p over virtio. Their dependencies come from modules.dep.
var guestModules = []string{"virtio_pci", "9pnet_virtio", "9p"}

// moduleName is the name modprobe knows a module file by: the base name
// without .ko and compression suffix, dashes read as underscores.
func moduleName(file string) string {
	base := path.Base(file)
	if i := strings.Index(base, ".ko"); i >= 0 {
		base = base[:i]
	}
	return strings.ReplaceAll(base, "-", "_")
}

// moduleIndex is a kernel's modules.dep and modules.builtin.
type moduleIndex struct {
	deps    map[string][]string // name -> its file, then the files it needs
	file    map[string]string   // name -> file, relative to the modules dir
	builtin map[string]bool
}

func parseModules(dep, builtin io.Reader) (*moduleIndex, error) {
	m := &moduleIndex{deps: map[string][]string{}, file: map[string]string{}, builtin: map[string]bool{}}
	sc := bufio.NewScanner(dep)
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		file, needs, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("modules.dep line %d: no colon in %q", n, line)
		}
		name := moduleName(file)
		m.file[name] = file
		m.deps[name] = strings.Fields(needs)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read modules.dep: %w", err)
	}
	sc = bufio.NewScanner(builtin)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			m.builtin[moduleName(line)] = true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read modules.builtin: %w", err)
	}
	return m, nil
}

// loadModuleIndex reads the index of the modules in dir (/lib/modules/<release>).
func loadModuleIndex(dir string) (*moduleIndex, error) {
	dep, err := os.Open(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return nil, err
	}
	defer dep.Close()
	builtin, err := os.Open(filepath.Join(dir, "modules.builtin"))
	if err != nil {
		return nil, err
	}
	defer builtin.Close()
	return parseModules(dep, builtin)
}

// resolve returns the files to load for the named modules, each after the
// modules it needs; built-in modules need no file.
func (m *moduleIndex) resolve(names ...string) ([]string, error) {
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name, from string) error
	visit = func(name, from string) error {
		switch state[name] {
		case 1:
			return fmt.Errorf("module %s: dependency cycle through %s", name, from)
		case 2:
			return nil
		}
		file, ok := m.file[name]
		if !ok {
			if m.builtin[name] {
				state[name] = 2
				return nil
			}
			if from != "" {
				return fmt.Errorf("module %s (needed by %s): not in modules.dep", name, from)
			}
			return fmt.Errorf("module %s: neither in modules.dep nor in modules.builtin", name)
		}
		state[name] = 1
		for _, dep := range m.deps[name] {
			if err := visit(moduleName(dep), name); err != nil {
				return err
			}
		}
		state[name] = 2
		order = append(order, file)
		return nil
	}
	for _, name := range names {
		// A module both built in and listed (never, in practice) needs nothing.
		if m.builtin[name] {
			continue
		}
		if err := visit(name, ""); err != nil {
			return nil, err
		}
	}
	return order, nil
}
