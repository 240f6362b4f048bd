package clamav

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// rulesVersion names the built-in rules (EICAR, matching semantics); bump it
// when they change so that cached clean verdicts are dropped.
const rulesVersion = "vigil-builtin/1"

// supported maps the database extensions we load to their list.
var supported = map[string]list{
	".hdb": blockList,
	".hsb": blockList,
	".fp":  allowList,
	".sfp": allowList,
}

// clamExtensions are the other ClamAV database extensions: found in a
// directory they are counted as skipped, never silently dropped.
var clamExtensions = map[string]bool{
	".db": true, ".hdu": true, ".hsu": true, ".mdb": true, ".mdu": true,
	".msb": true, ".msu": true, ".ndb": true, ".ndu": true, ".ldb": true,
	".ldu": true, ".sdb": true, ".zmd": true, ".rmd": true, ".idb": true,
	".gdb": true, ".pdb": true, ".wdb": true, ".cbc": true, ".ftm": true,
	".cfg": true, ".cvd": true, ".cld": true, ".cud": true, ".cdb": true,
	".cat": true, ".crb": true, ".ioc": true, ".yar": true, ".yara": true,
	".pwdb": true, ".ign": true, ".ign2": true, ".imp": true, ".info": true,
	".sign": true,
}

const reasonNotSupported = "not supported yet"

type list uint8

const (
	blockList list = iota
	allowList
)

// Engine is the built-in engine. It is immutable once loaded: a reload
// builds a new Engine.
type Engine struct {
	block, allow set
	version      string
	report       Report
}

// Load reads the databases at paths, each a database file or a directory
// of them (not recursed into). A missing path, an explicit file of a type
// we do not read, or a malformed line is an error. With no paths the engine
// detects EICAR only. Load logs each file at debug level; the caller logs
// the summary, Report().String().
func Load(paths []string, log hclog.Logger) (*Engine, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	e := &Engine{}
	skipped := map[string]int{}
	var entries [][32]byte
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("load database: %w", err)
		}
		if !fi.IsDir() {
			ext := strings.ToLower(filepath.Ext(p))
			l, ok := supported[ext]
			if !ok {
				if clamExtensions[ext] {
					return nil, fmt.Errorf("load %s: %s databases are %s", p, ext, reasonNotSupported)
				}
				return nil, fmt.Errorf("load %s: not a database we read (want .hdb, .hsb, .fp or .sfp)", p)
			}
			if entries, err = e.loadFile(p, l, entries); err != nil {
				return nil, err
			}
			log.Debug("database loaded", "path", p)
			continue
		}
		des, err := os.ReadDir(p)
		if err != nil {
			return nil, fmt.Errorf("load database directory: %w", err)
		}
		for _, de := range des {
			if de.IsDir() {
				continue
			}
			name := filepath.Join(p, de.Name())
			ext := strings.ToLower(filepath.Ext(de.Name()))
			if l, ok := supported[ext]; ok {
				if entries, err = e.loadFile(name, l, entries); err != nil {
					return nil, err
				}
				log.Debug("database loaded", "path", name)
			} else if clamExtensions[ext] {
				skipped[ext]++
				log.Debug("database skipped: "+reasonNotSupported, "path", name)
			}
		}
	}
	e.version = versionOf(entries)
	e.report.Version = e.version
	e.report.Signatures = map[string]int{}
	for k, n := range e.block.counts() {
		e.report.Signatures[kind(k).String()] = n
	}
	for k, n := range e.allow.counts() {
		e.report.Signatures["allow-"+kind(k).String()] = n
	}
	for ext, n := range skipped {
		e.report.Skipped = append(e.report.Skipped, Skip{Ext: ext, Files: n, Reason: reasonNotSupported})
	}
	slices.SortFunc(e.report.Skipped, func(a, b Skip) int { return strings.Compare(a.Ext, b.Ext) })
	return e, nil
}

func (e *Engine) loadFile(path string, l list, entries [][32]byte) ([][32]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return entries, fmt.Errorf("load database: %w", err)
	}
	defer f.Close()
	dst := &e.block
	if l == allowList {
		dst = &e.allow
	}
	excluded, err := parseHashDB(path, f, func(s sig) {
		dst.add(s)
		entries = append(entries, entryDigest(l, s))
	})
	if err != nil {
		return entries, fmt.Errorf("load database %w", err)
	}
	e.report.Files++
	e.report.Excluded += excluded
	return entries, nil
}

// entryDigest identifies one loaded signature for the version. Keeping
// 32 bytes per signature, not the signature, bounds Load's peak memory.
func entryDigest(l list, s sig) [32]byte {
	buf := make([]byte, 0, 2+8+len(s.hash)+4+len(s.name))
	buf = append(buf, byte(l), byte(s.kind))
	buf = binary.BigEndian.AppendUint64(buf, uint64(s.size))
	buf = append(buf, s.hash...)
	buf = binary.BigEndian.AppendUint32(buf, uint32(len(s.name)))
	buf = append(buf, s.name...)
	return sha256.Sum256(buf)
}

// versionOf hashes the sorted signature digests with the built-in rules:
// the version is the same whatever the files' order or layout, and changes
// with any signature.
func versionOf(entries [][32]byte) string {
	slices.SortFunc(entries, func(a, b [32]byte) int { return bytes.Compare(a[:], b[:]) })
	h := sha256.New()
	fmt.Fprintf(h, "%s flevel=%d\n", rulesVersion, FunctionalityLevel)
	for i := range entries {
		h.Write(entries[i][:])
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// Report describes what Load read.
type Report struct {
	Version string
	// Files is the number of database files loaded.
	Files int
	// Signatures counts loaded signatures by type: "md5", "sha1", "sha256"
	// (detections) and "allow-md5", "allow-sha1", "allow-sha256" (.fp/.sfp).
	Signatures map[string]int
	// Excluded counts valid signatures left out by their MinFL/MaxFL.
	Excluded int
	// Skipped lists, by extension, database files found and not read.
	Skipped []Skip
}

// Skip counts the database files of one extension that were not read.
type Skip struct {
	Ext    string // ".ndb"
	Files  int
	Reason string
}

// Total is the number of signatures loaded, allow lists included.
func (r Report) Total() int {
	n := 0
	for _, c := range r.Signatures {
		n += c
	}
	return n
}

// String is one line for a log or `vigil scan --report`, e.g.
// "builtin db 3f2a…: 2 files, 5 signatures (md5=3 sha1=0 sha256=1 allow-md5=1 ...); skipped .cvd=1 .ndb=2 (not supported yet)".
func (r Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "builtin db %s: %d files, %d signatures (", r.Version, r.Files, r.Total())
	for i, k := range []string{"md5", "sha1", "sha256", "allow-md5", "allow-sha1", "allow-sha256"} {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d", k, r.Signatures[k])
	}
	b.WriteByte(')')
	if r.Excluded > 0 {
		fmt.Fprintf(&b, ", %d excluded by functionality level", r.Excluded)
	}
	// Group by reason so that the line stays short.
	var reasons []string
	byReason := map[string][]string{}
	for _, s := range r.Skipped {
		if _, ok := byReason[s.Reason]; !ok {
			reasons = append(reasons, s.Reason)
		}
		byReason[s.Reason] = append(byReason[s.Reason], fmt.Sprintf("%s=%d", s.Ext, s.Files))
	}
	for _, reason := range reasons {
		fmt.Fprintf(&b, "; skipped %s (%s)", strings.Join(byReason[reason], " "), reason)
	}
	return b.String()
}

// Report returns what Load read.
func (e *Engine) Report() Report {
	r := e.report
	r.Signatures = make(map[string]int, len(e.report.Signatures))
	for k, v := range e.report.Signatures {
		r.Signatures[k] = v
	}
	r.Skipped = slices.Clone(e.report.Skipped)
	return r
}
