package clamav

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
)

// rulesVersion names the built-in rules (EICAR, matching semantics); bump it
// when they change so that cached clean verdicts are dropped.
const rulesVersion = "vigil-builtin/7"

// dbKind is how a database file is read.
type dbKind uint8

const (
	dbBlock   dbKind = iota // .hdb/.hsb: file hashes
	dbAllow                 // .fp/.sfp: file hashes that clear a detection
	dbBody                  // .ndb: body signatures
	dbSection               // .mdb/.msb: PE section hashes
)

// supported maps the database extensions we load to how we read them.
var supported = map[string]dbKind{
	".hdb": dbBlock,
	".hsb": dbBlock,
	".fp":  dbAllow,
	".sfp": dbAllow,
	".ndb": dbBody,
	".mdb": dbSection,
	".msb": dbSection,
}

// clamExtensions are the other ClamAV database extensions: found in a
// directory they are counted as skipped, never silently dropped.
var clamExtensions = map[string]bool{
	".db": true, ".hdu": true, ".hsu": true, ".mdu": true,
	".msu": true, ".ndu": true, ".ldb": true,
	".ldu": true, ".sdb": true, ".zmd": true, ".rmd": true, ".idb": true,
	".gdb": true, ".pdb": true, ".wdb": true, ".cbc": true, ".ftm": true,
	".cfg": true, ".cvd": true, ".cld": true, ".cud": true, ".cdb": true,
	".cat": true, ".crb": true, ".ioc": true, ".yar": true, ".yara": true,
	".pwdb": true, ".ign": true, ".ign2": true, ".imp": true, ".info": true,
	".sign": true,
}

const reasonNotSupported = "not supported yet"

// windowChunk is what each read adds to a body scan's window; tests shrink
// it to cross many window boundaries.
var windowChunk = chunk

// list names a signature set in the version digest.
type list uint8

const (
	blockList list = iota
	allowList
	sectionList
	bodyList
)

// Engine is the built-in engine. It is immutable once loaded: a reload
// builds a new Engine.
type Engine struct {
	block, allow set
	// sections holds .mdb/.msb PE section hashes, keyed by section size.
	sections set
	body     *matcher // nil without body signatures
	// bufs holds scan windows sized for body's reach.
	bufs    *sync.Pool
	version string
	report  Report
}

// Options change how databases load. The zero value is the default.
type Options struct {
	// SkipSignatureCheck accepts .cvd containers not signed with ClamAV's
	// key, for containers built locally; their MD5 and .info checksums are
	// still checked.
	SkipSignatureCheck bool
}

// Load reads the databases at paths with the default Options.
func Load(paths []string, log hclog.Logger) (*Engine, error) {
	return Options{}.Load(paths, log)
}

// Load reads the databases at paths, each a database file, a .cvd/.cld/.cud
// container or a directory of them (not recursed into). Where a directory
// holds both name.cvd and name.cld, the newer is read (the .cld when they
// are equal), as ClamAV does. .ign2/.ign lists, loose or in a container,
// drop the signatures they name. A missing path, an explicit file of a
// type we do not read, a malformed line, or a corrupt or tampered
// container is an error naming the file. With no paths the engine detects
// EICAR only. Load logs each file at debug level; the caller logs the
// summary, Report().String().
func (o Options) Load(paths []string, log hclog.Logger) (*Engine, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	files, err := databaseFiles(paths)
	if err != nil {
		return nil, err
	}
	b := newBuilder(log)
	// Ignore lists come first: they apply to every database, whichever
	// file or container holds them.
	var dbs []member
	for _, f := range files {
		switch ext := strings.ToLower(filepath.Ext(f)); {
		case isContainer(ext):
			h, ms, err := readContainer(f, !o.SkipSignatureCheck)
			if err != nil {
				return nil, fmt.Errorf("load database: %w", err)
			}
			b.e.report.Containers = append(b.e.report.Containers, Container{
				File: filepath.Base(f), Name: h.Name, Version: h.Version, Signatures: h.Sigs, Built: h.Time,
			})
			for _, m := range ms {
				m.Name = f + "/" + m.Name
				if isIgnoreList(m.Name) {
					if err := b.ignore.parse(m.Name, bytes.NewReader(m.Data)); err != nil {
						return nil, fmt.Errorf("load ignore list %w", err)
					}
					continue
				}
				dbs = append(dbs, m)
			}
		case isIgnoreList(f):
			data, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("load ignore list: %w", err)
			}
			if err := b.ignore.parse(f, bytes.NewReader(data)); err != nil {
				return nil, fmt.Errorf("load ignore list %w", err)
			}
		default:
			dbs = append(dbs, member{Name: f}) // read when its turn comes
		}
	}
	for _, m := range dbs {
		if m.Data == nil {
			err = b.addPath(m.Name)
		} else {
			err = b.addFile(m.Name, bytes.NewReader(m.Data))
		}
		if err != nil {
			return nil, err
		}
	}
	return b.finish(), nil
}

func isContainer(ext string) bool { return ext == ".cvd" || ext == ".cld" || ext == ".cud" }

func isIgnoreList(name string) bool {
	ext := strings.ToLower(filepath.Ext(name))
	return ext == ".ign2" || ext == ".ign"
}

// databaseFiles lists the files Load reads: explicit files of a type we
// read, and the ClamAV databases of each directory, sorted, with the older
// of a .cvd/.cld pair left out.
func databaseFiles(paths []string) ([]string, error) {
	var files []string
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("load database: %w", err)
		}
		if !fi.IsDir() {
			ext := strings.ToLower(filepath.Ext(p))
			if _, ok := supported[ext]; !ok && !isContainer(ext) && !isIgnoreList(p) {
				if clamExtensions[ext] {
					return nil, fmt.Errorf("load %s: %s databases are %s", p, ext, reasonNotSupported)
				}
				return nil, fmt.Errorf("load %s: not a database we read (want .cvd, .cld, .cud, .hdb, .hsb, .fp, .sfp, .ndb, .mdb, .msb, .ign or .ign2)", p)
			}
			files = append(files, p)
			continue
		}
		des, err := os.ReadDir(p)
		if err != nil {
			return nil, fmt.Errorf("load database directory: %w", err)
		}
		var dir []string
		for _, de := range des {
			if de.IsDir() {
				continue
			}
			ext := strings.ToLower(filepath.Ext(de.Name()))
			if _, ok := supported[ext]; ok || clamExtensions[ext] {
				dir = append(dir, filepath.Join(p, de.Name()))
			}
		}
		dir, err = newestContainers(dir)
		if err != nil {
			return nil, err
		}
		files = append(files, dir...)
	}
	return files, nil
}

// newestContainers drops name.cvd or name.cld, whichever is older; on equal
// versions the .cld (freshclam's incrementally updated copy) stays.
func newestContainers(files []string) ([]string, error) {
	type seen struct {
		path    string
		version int
		cld     bool
	}
	best := map[string]seen{}
	for _, f := range files {
		ext := strings.ToLower(filepath.Ext(f))
		if ext != ".cvd" && ext != ".cld" {
			continue
		}
		v, err := containerVersion(f)
		if err != nil {
			return nil, fmt.Errorf("load database: read container %s: %w", f, err)
		}
		name := strings.TrimSuffix(f, filepath.Ext(f))
		cur := seen{f, v, ext == ".cld"}
		if b, ok := best[name]; !ok || cur.version > b.version || cur.version == b.version && cur.cld {
			best[name] = cur
		}
	}
	out := files[:0]
	for _, f := range files {
		ext := strings.ToLower(filepath.Ext(f))
		if (ext == ".cvd" || ext == ".cld") && best[strings.TrimSuffix(f, filepath.Ext(f))].path != f {
			continue
		}
		out = append(out, f)
	}
	return out, nil
}

// containerVersion reads the version from a container's header only.
func containerVersion(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var raw [cvdHeaderSize]byte
	if n, err := io.ReadFull(f, raw[:]); err != nil {
		return 0, fmt.Errorf("header: %d of %d bytes", n, cvdHeaderSize)
	}
	h, err := parseCVDHeader(raw[:])
	if err != nil {
		return 0, err
	}
	return h.Version, nil
}

// builder collects databases into an Engine.
type builder struct {
	e        *Engine
	log      hclog.Logger
	entries  [][32]byte
	body     []*bodySig
	never    []*bodySig // target 7 signatures that never match
	fileSkip map[string]int
	sigSkip  map[SigSkip]int // keyed with Count 0
	ignore   ignoreList
}

func newBuilder(log hclog.Logger) *builder {
	return &builder{e: &Engine{}, log: log, fileSkip: map[string]int{}, sigSkip: map[SigSkip]int{}}
}

func (b *builder) addPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("load database: %w", err)
	}
	defer f.Close()
	return b.addFile(path, f)
}

// addFile reads one database by its name's extension: Load feeds it plain
// files, and a container reader can feed it each member (name and bytes)
// the same way. Other ClamAV database types are counted as skipped; a name
// that is no ClamAV database at all is an error.
func (b *builder) addFile(name string, r io.Reader) error {
	ext := strings.ToLower(filepath.Ext(name))
	kind, ok := supported[ext]
	if !ok {
		if clamExtensions[ext] {
			b.fileSkip[ext]++
			b.log.Debug("database skipped: "+reasonNotSupported, "path", name)
			return nil
		}
		return fmt.Errorf("load %s: not a ClamAV database", name)
	}
	if len(b.ignore.names) > 0 {
		data, err := io.ReadAll(r)
		if err != nil {
			return fmt.Errorf("load database %s: %w", name, err)
		}
		nameField := 2 // Hash:Size:Name
		if kind == dbBody {
			nameField = 0 // Name:Target:Offset:Hex
		}
		var n int
		data, n = b.ignore.filter(data, nameField)
		b.e.report.Ignored += n
		r = bytes.NewReader(data)
	}
	var err error
	switch kind {
	case dbBlock, dbAllow, dbSection:
		dst, l, parse := &b.e.block, blockList, parseHashDB
		switch kind {
		case dbAllow:
			dst, l = &b.e.allow, allowList
		case dbSection:
			dst, l, parse = &b.e.sections, sectionList, parseSectionDB
		}
		var excluded int
		excluded, err = parse(name, r, func(s sig) {
			dst.add(s)
			b.entries = append(b.entries, entryDigest(l, s))
		})
		b.e.report.Excluded += excluded
	case dbBody:
		err = parseNDB(name, r, func(res ndbResult) {
			switch {
			case res.level:
				b.e.report.Excluded++
			case res.skip != "":
				b.sigSkip[SigSkip{Ext: ext, Target: targetName(res.target), Reason: res.skip}]++
				if res.never != nil && res.never.target == targetASCII {
					b.never = append(b.never, res.never)
				}
			default:
				b.entries = append(b.entries, bodyDigest(res.sig))
				res.sig.text = ""
				b.body = append(b.body, res.sig)
			}
		})
	}
	if err != nil {
		return fmt.Errorf("load database %w", err)
	}
	b.e.report.Files++
	b.log.Debug("database loaded", "path", name)
	return nil
}

func targetName(t int) string {
	if t >= 0 && t < len(targetNames) {
		return fmt.Sprintf("target %d (%s)", t, targetNames[t])
	}
	return fmt.Sprintf("target %d", t)
}

// finish compiles what was added into the Engine.
func (b *builder) finish() *Engine {
	e := b.e
	if len(b.body) > 0 {
		e.body = compile(b.body)
		for _, s := range b.never {
			e.body.noteASCII(s)
		}
		size := windowChunk + e.body.back + e.body.fwd
		e.bufs = &sync.Pool{New: func() any { b := make([]byte, size); return &b }}
	}
	e.version = versionOf(b.entries)
	e.report.Version = e.version
	e.report.Signatures = map[string]int{}
	for k, n := range e.block.counts() {
		e.report.Signatures[kind(k).String()] = n
	}
	for k, n := range e.allow.counts() {
		e.report.Signatures["allow-"+kind(k).String()] = n
	}
	for k, n := range e.sections.counts() {
		e.report.Signatures["pe-"+kind(k).String()] = n
	}
	e.report.Signatures["ndb"] = len(b.body)
	for ext, n := range b.fileSkip {
		e.report.Skipped = append(e.report.Skipped, Skip{Ext: ext, Files: n, Reason: reasonNotSupported})
	}
	slices.SortFunc(e.report.Skipped, func(a, b Skip) int { return strings.Compare(a.Ext, b.Ext) })
	for k, n := range b.sigSkip {
		k.Count = n
		e.report.SkippedSignatures = append(e.report.SkippedSignatures, k)
	}
	slices.SortFunc(e.report.SkippedSignatures, func(a, b SigSkip) int {
		if c := strings.Compare(a.Ext, b.Ext); c != 0 {
			return c
		}
		return strings.Compare(a.Target, b.Target)
	})
	return e
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

// bodyDigest identifies one body signature for the version: its line.
func bodyDigest(s *bodySig) [32]byte {
	buf := make([]byte, 0, 1+len(s.text))
	buf = append(buf, byte(bodyList))
	buf = append(buf, s.text...)
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
	// (file hashes), "ndb" (body signatures), "pe-md5", "pe-sha1",
	// "pe-sha256" (.mdb/.msb PE section hashes) and "allow-md5",
	// "allow-sha1", "allow-sha256" (.fp/.sfp).
	Signatures map[string]int
	// Excluded counts valid signatures left out by their MinFL/MaxFL.
	Excluded int
	// Skipped lists, by extension, database files found and not read.
	Skipped []Skip
	// SkippedSignatures counts the signatures of files we read that we
	// do not use, by extension and target type, with the reason.
	SkippedSignatures []SigSkip
	// Ignored counts signatures dropped by .ign2/.ign lists.
	Ignored int
	// Containers lists the .cvd/.cld/.cud containers read.
	Containers []Container
}

// Container is one .cvd/.cld/.cud read.
type Container struct {
	File       string // "daily.cld"
	Name       string // "daily"
	Version    int
	Signatures int    // as its header says
	Built      string // build time as its header writes it
}

// Skip counts the database files of one extension that were not read.
type Skip struct {
	Ext    string // ".ndb"
	Files  int
	Reason string
}

// SigSkip counts the signatures of one target type left unused.
type SigSkip struct {
	Ext    string // ".ndb"
	Target string // "target 3 (HTML)"
	Count  int
	Reason string
}

// reportKeys orders Signatures in String.
var reportKeys = []string{"md5", "sha1", "sha256", "ndb", "pe-md5", "pe-sha1", "pe-sha256", "allow-md5", "allow-sha1", "allow-sha256"}

// Total is the number of signatures loaded, allow lists included.
func (r Report) Total() int {
	n := 0
	for _, c := range r.Signatures {
		n += c
	}
	return n
}

// String is one line for a log or `vigil scan --report`, e.g.
// "builtin db 3f2a…: 2 files, 5 signatures (md5=3 sha1=0 sha256=1 ndb=1 ...); skipped .ldb=1 (not supported yet); unused .ndb target-3-(HTML)=2 (needs HTML or mail parsing we do not do)".
func (r Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "builtin db %s: %d files, %d signatures (", r.Version, r.Files, r.Total())
	for i, k := range reportKeys {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d", k, r.Signatures[k])
	}
	b.WriteByte(')')
	if r.Excluded > 0 {
		fmt.Fprintf(&b, ", %d excluded by functionality level", r.Excluded)
	}
	if r.Ignored > 0 {
		fmt.Fprintf(&b, ", %d ignored by .ign2/.ign", r.Ignored)
	}
	for _, c := range r.Containers {
		fmt.Fprintf(&b, "; %s v%d (%d signatures, built %s)", c.File, c.Version, c.Signatures, c.Built)
	}
	// Group by reason so that the line stays short.
	group := func(verb string, n int, item func(i int) (reason, text string)) {
		var reasons []string
		by := map[string][]string{}
		for i := range n {
			reason, text := item(i)
			if _, ok := by[reason]; !ok {
				reasons = append(reasons, reason)
			}
			by[reason] = append(by[reason], text)
		}
		for _, reason := range reasons {
			fmt.Fprintf(&b, "; %s %s (%s)", verb, strings.Join(by[reason], " "), reason)
		}
	}
	group("skipped", len(r.Skipped), func(i int) (string, string) {
		s := r.Skipped[i]
		return s.Reason, fmt.Sprintf("%s=%d", s.Ext, s.Files)
	})
	group("unused", len(r.SkippedSignatures), func(i int) (string, string) {
		s := r.SkippedSignatures[i]
		return s.Reason, fmt.Sprintf("%s %s=%d", s.Ext, strings.ReplaceAll(s.Target, " ", "-"), s.Count)
	})
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
	r.SkippedSignatures = slices.Clone(e.report.SkippedSignatures)
	return r
}
