package policy

import (
	"fmt"
	"io"
	"math"
	"math/big"
	"net"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"golang.org/x/sys/unix"

	"github.com/vigilsec/vigil/internal/scan/clamd"
)

// Defaults from DESIGN.md; DefaultSettings returns them as a value.
const (
	DefaultWorkers       = 4
	DefaultScanTimeout   = 5 * time.Second
	DefaultMaxFileSize   = 100 << 20
	DefaultOnError       = OnErrorAllow
	DefaultControlSocket = "/run/vigil/vigil.sock"
	DefaultAlertLog      = "/var/log/vigil/alerts.jsonl"
	DefaultQuarantineDir = "/var/lib/vigil/quarantine"
	DefaultEvents        = EventOpen | EventExec
)

// DefaultSettings returns the settings a policy gets when it has no
// settings block; useful to callers that run without a policy.
func DefaultSettings() Settings {
	return Settings{
		Workers:       DefaultWorkers,
		ScanTimeout:   DefaultScanTimeout,
		MaxFileSize:   DefaultMaxFileSize,
		OnError:       DefaultOnError,
		ControlSocket: DefaultControlSocket,
		AlertLog:      DefaultAlertLog,
		QuarantineDir: DefaultQuarantineDir,
	}
}

var rootSchema = &hcl.BodySchema{
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "engine", LabelNames: []string{"kind"}},
		{Type: "settings"},
		{Type: "watch", LabelNames: []string{"path"}},
		{Type: "exclude"},
	},
}

var (
	builtinSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "databases"},
		{Name: "verify_signatures"},
	}}
	clamdSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "address", Required: true},
		{Name: "timeout"},
	}}
	settingsSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "workers"},
		{Name: "scan_timeout"},
		{Name: "max_file_size"},
		{Name: "on_error"},
		{Name: "control_socket"},
		{Name: "alert_log"},
		{Name: "metrics_listen"},
		{Name: "quarantine_dir"},
		{Name: "ignore_out_of_scope"},
	}}
	watchSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "action"},
		{Name: "recursive"},
		{Name: "mode"},
		{Name: "on"},
		{Name: "exclude"},
		{Name: "on_error"},
		{Name: "max_file_size"},
	}}
	excludeSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
		{Name: "uids"},
		{Name: "programs"},
	}}
)

// Load reads and parses a policy file, a regular file of 1 MiB at most
// (see Parse), then looks at the paths it names: a watch path or
// database that does not exist, and a watch path that is not a
// directory, are warnings (see checkPaths).
func Load(filename string) (*Policy, hcl.Diagnostics) {
	src, err := readPolicy(filename)
	if err != nil {
		forget(filename) // no stale source under the error
		return nil, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Cannot read policy file",
			Detail:   sentence(err),
			Subject:  &hcl.Range{Filename: filename, Start: hcl.InitialPos, End: hcl.InitialPos},
		}}
	}
	pol, diags, refs := parse(src, filename)
	if warns := checkPaths(refs); len(warns) > 0 {
		diags = sortDiags(append(diags, warns...))
	}
	return pol, diags
}

// maxPolicySize bounds what Load reads: a policy is a few kilobytes,
// and a path named by mistake may be a large file.
const maxPolicySize = 1 << 20

// readPolicy reads a policy file, which must be a regular file (after
// links): a FIFO or a device such as /dev/zero would hold Load forever,
// at the open or the read.
func readPolicy(name string) ([]byte, error) {
	regular := func(fi os.FileInfo, err error) error {
		if err == nil && !fi.Mode().IsRegular() {
			err = fmt.Errorf("policy %s: not a regular file", name)
		}
		return err
	}
	// Look before opening: opening a device may do something (a watchdog
	// starts counting). The open does not block either, should a FIFO
	// have taken the file's place since, and what was opened is looked at
	// again.
	if err := regular(os.Stat(name)); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(name, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := regular(f.Stat()); err != nil {
		return nil, err
	}
	src, err := io.ReadAll(io.LimitReader(f, maxPolicySize+1))
	if err != nil {
		return nil, err
	}
	if len(src) > maxPolicySize {
		return nil, fmt.Errorf("policy %s: larger than %d MiB, the limit", name, maxPolicySize>>20)
	}
	return src, nil
}

// Parse parses and validates a policy. It never touches the filesystem.
// Every problem found is returned, sorted by position; the Policy is nil
// whenever the diagnostics contain an error, so a half-valid policy can
// never be put in force. The source is remembered for WriteDiagnostics.
func Parse(src []byte, filename string) (*Policy, hcl.Diagnostics) {
	pol, diags, _ := parse(src, filename)
	return pol, diags
}

// parse is Parse, and also returns the paths for Load to look at.
func parse(src []byte, filename string) (*Policy, hcl.Diagnostics, []pathRef) {
	file, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos)
	remember(filename, src, file)
	if diags.HasErrors() {
		return nil, sortDiags(diags), nil
	}
	ps := &parser{filename: filename, diags: diags}
	pol := ps.policy(file.Body)
	diags = sortDiags(ps.diags)
	if diags.HasErrors() {
		return nil, diags, ps.paths
	}
	return pol, diags, ps.paths
}

func sortDiags(diags hcl.Diagnostics) hcl.Diagnostics {
	sort.SliceStable(diags, func(i, j int) bool {
		a, b := diags[i].Subject, diags[j].Subject
		switch {
		case a == nil || b == nil:
			return a != nil && b == nil
		case a.Filename != b.Filename:
			return a.Filename < b.Filename
		default:
			return a.Start.Byte < b.Start.Byte
		}
	})
	return diags
}

type parser struct {
	filename string
	diags    hcl.Diagnostics
	qdir     *hcl.Range // the quarantine_dir attribute, if set
	quiet    *hcl.Range // the ignore_out_of_scope attribute, if true
	paths    []pathRef  // watch and database paths, for Load to look at
}

func (ps *parser) errorf(rng hcl.Range, summary, format string, args ...any) {
	ps.diags = append(ps.diags, &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  summary,
		Detail:   fmt.Sprintf(format, args...),
		Subject:  rng.Ptr(),
	})
}

func (ps *parser) policy(body hcl.Body) *Policy {
	content, diags := body.Content(rootSchema)
	ps.diags = append(ps.diags, diags...)

	pol := &Policy{
		Filename: ps.filename,
		Engine:   Engine{Kind: EngineBuiltin, VerifySignatures: true},
		Settings: DefaultSettings(),
	}

	// Settings first: watches inherit on_error and max_file_size from them.
	var first = map[string]*hcl.Block{}
	for _, b := range content.Blocks {
		if b.Type != "engine" && b.Type != "settings" {
			continue
		}
		if prev, ok := first[b.Type]; ok {
			ps.errorf(b.DefRange, fmt.Sprintf("Duplicate %s block", b.Type),
				"Only one %s block is allowed; the first one is at %s.", b.Type, pos(prev.DefRange))
			continue
		}
		first[b.Type] = b
	}
	if b := first["settings"]; b != nil {
		ps.settings(b, &pol.Settings)
	}
	if b := first["engine"]; b != nil {
		ps.engine(b, &pol.Engine)
	}

	seen := map[string]hcl.Range{}
	nwatch := 0
	for _, b := range content.Blocks {
		switch b.Type {
		case "watch":
			nwatch++
			w := ps.watch(b, pol.Settings)
			if w == nil {
				continue
			}
			if prev, ok := seen[w.Path]; ok {
				ps.errorf(w.Range, "Duplicate watch",
					"%q is already watched by the block at %s.", w.Path, pos(prev))
				continue
			}
			seen[w.Path] = w.Range
			pol.Watches = append(pol.Watches, w)
			ps.paths = append(ps.paths, pathRef{kind: watchPath, path: w.Path, rng: w.Range, watch: w})
		case "exclude":
			ps.exclude(b, &pol.Exclude)
		}
	}
	if nwatch == 0 && !hasWatch(body) {
		start := hcl.InitialPos
		ps.errorf(hcl.Range{Filename: ps.filename, Start: start, End: start}, "No watch block",
			"A policy needs at least one watch block, e.g. watch \"/srv/uploads\" {}.")
	}
	ps.checkQuarantine(pol)
	ps.checkQuiet(pol)
	pol.index()
	return pol
}

// hasWatch says whether body has a watch block, even one that Content
// dropped for a missing or extra label: that error is the one to report,
// not "No watch block".
func hasWatch(body hcl.Body) bool {
	sb, ok := body.(*hclsyntax.Body)
	if !ok {
		return false
	}
	for _, b := range sb.Blocks {
		if b.Type == "watch" {
			return true
		}
	}
	return false
}

// checkQuarantine refuses a quarantine_dir that a watch covers when some
// watch quarantines: vigil would scan, deny and quarantine its own store,
// and `vigil quarantine restore` could not read it.
func (ps *parser) checkQuarantine(pol *Policy) {
	var q *Watch
	for _, w := range pol.Watches {
		if w.Action == ActionQuarantine {
			q = w
			break
		}
	}
	if q == nil {
		return
	}
	dir := pol.Settings.QuarantineDir
	for _, w := range pol.Watches {
		// The store's files are the directory's children.
		if _, ok := w.covers(path.Join(dir, "entry")); !ok {
			continue
		}
		rng := q.Range
		if ps.qdir != nil {
			rng = *ps.qdir
		}
		ps.errorf(rng, "Quarantine directory inside a watch",
			"quarantine_dir %q is covered by the watch at %s; choose a directory outside every watch.", dir, pos(w.Range))
		return
	}
}

// checkQuiet warns that ignore_out_of_scope does nothing when no watch
// is in filesystem mode: only filesystem marks see out-of-scope opens.
func (ps *parser) checkQuiet(pol *Policy) {
	if ps.quiet == nil {
		return
	}
	for _, w := range pol.Watches {
		if w.Mode == ModeFilesystem {
			return
		}
	}
	ps.diags = append(ps.diags, &hcl.Diagnostic{
		Severity: hcl.DiagWarning,
		Summary:  "ignore_out_of_scope has no effect",
		Detail:   "It applies to watches in filesystem mode, and no watch has mode = \"filesystem\".",
		Subject:  ps.quiet,
	})
}

// pos renders a range's start as file:line,col.
func pos(r hcl.Range) string {
	return fmt.Sprintf("%s:%d,%d", r.Filename, r.Start.Line, r.Start.Column)
}

func (ps *parser) engine(b *hcl.Block, e *Engine) {
	label := b.LabelRanges[0]
	e.Range = label
	switch EngineKind(b.Labels[0]) {
	case EngineBuiltin:
		e.Kind = EngineBuiltin
		content, diags := b.Body.Content(builtinSchema)
		ps.diags = append(ps.diags, diags...)
		if a := content.Attributes["databases"]; a != nil {
			ps.list(a, func(ex hcl.Expression, v cty.Value) {
				if p, ok := ps.absPath(ex.Range(), "databases", v.AsString()); ok {
					e.Databases = append(e.Databases, p)
					ps.paths = append(ps.paths, pathRef{kind: databasePath, path: p, rng: ex.Range()})
				}
			})
		}
		if a := content.Attributes["verify_signatures"]; a != nil {
			if v, ok := ps.boolean(a); ok {
				e.VerifySignatures = v
			}
		}
	case EngineClamd:
		e.Kind = EngineClamd
		content, diags := b.Body.Content(clamdSchema)
		ps.diags = append(ps.diags, diags...)
		if a := content.Attributes["address"]; a != nil {
			if s, ok := ps.str(a); ok {
				// The engine's own parser: what passes here dials at run time.
				if _, _, err := clamd.ParseAddress(s); err != nil {
					ps.errorf(a.Expr.Range(), "Invalid address",
						"Got %q: %v; the address must be unix:///path/to/socket or tcp://host:port.", s, err)
				} else {
					e.Address = s
				}
			}
		}
		if a := content.Attributes["timeout"]; a != nil {
			if d, ok := ps.duration(a); ok {
				e.Timeout = d
			}
		}
	default:
		ps.errorf(label, "Invalid engine", "Got %q; allowed: %s.", b.Labels[0], allowed(EngineBuiltin, EngineClamd))
	}
}

func (ps *parser) settings(b *hcl.Block, s *Settings) {
	content, diags := b.Body.Content(settingsSchema)
	ps.diags = append(ps.diags, diags...)
	attrs := content.Attributes
	if a := attrs["workers"]; a != nil {
		if n, ok := ps.integer(a.Expr, "workers", 1, 256); ok {
			s.Workers = int(n)
		}
	}
	if a := attrs["scan_timeout"]; a != nil {
		if d, ok := ps.duration(a); ok {
			s.ScanTimeout = d
		}
	}
	if a := attrs["max_file_size"]; a != nil {
		if n, ok := ps.size(a); ok {
			s.MaxFileSize = n
		}
	}
	if a := attrs["on_error"]; a != nil {
		if v, ok := enum(ps, a, OnErrorAllow, OnErrorDeny); ok {
			s.OnError = v
		}
	}
	for name, dst := range map[string]*string{
		"control_socket": &s.ControlSocket, "alert_log": &s.AlertLog, "quarantine_dir": &s.QuarantineDir,
	} {
		if a := attrs[name]; a != nil {
			if v, ok := ps.str(a); ok {
				if p, ok := ps.absPath(a.Expr.Range(), name, v); ok {
					*dst = p
				}
			}
		}
	}
	if a := attrs["quarantine_dir"]; a != nil {
		ps.qdir = a.Expr.Range().Ptr()
	}
	if a := attrs["ignore_out_of_scope"]; a != nil {
		if v, ok := ps.boolean(a); ok {
			s.IgnoreOutOfScope = v
			if v {
				ps.quiet = a.Expr.Range().Ptr()
			}
		}
	}
	if a := attrs["metrics_listen"]; a != nil {
		if v, ok := ps.str(a); ok {
			if err := loopbackAddr(v); err != nil {
				ps.errorf(a.Expr.Range(), "Invalid metrics_listen", "%s", sentence(err))
			} else {
				s.MetricsListen = v
			}
		}
	}
}

// watch returns nil when the label is unusable; attribute errors are
// reported but still yield a Watch so duplicates are found too.
func (ps *parser) watch(b *hcl.Block, s Settings) *Watch {
	w := &Watch{
		Action:      ActionBlock,
		Recursive:   true,
		Mode:        ModeTree,
		On:          DefaultEvents,
		OnError:     s.OnError,
		MaxFileSize: s.MaxFileSize,
		Range:       b.LabelRanges[0],
	}
	content, diags := b.Body.Content(watchSchema)
	ps.diags = append(ps.diags, diags...)
	attrs := content.Attributes

	if a := attrs["action"]; a != nil {
		if v, ok := enum(ps, a, ActionBlock, ActionAlert, ActionQuarantine); ok {
			w.Action = v
		}
	}
	if a := attrs["recursive"]; a != nil {
		if v, ok := ps.boolean(a); ok {
			w.Recursive = v
		}
	}
	if a := attrs["mode"]; a != nil {
		if v, ok := enum(ps, a, ModeTree, ModeFilesystem); ok {
			w.Mode = v
		}
	}
	if a := attrs["on"]; a != nil {
		var on Events
		n := ps.list(a, func(ex hcl.Expression, v cty.Value) {
			switch s := v.AsString(); s {
			case "open":
				on |= EventOpen
			case "exec":
				on |= EventExec
			case "access":
				on |= EventAccess
			default:
				ps.errorf(ex.Range(), "Invalid on", "Got %q; allowed: %s.", s, allowed("open", "exec", "access"))
			}
		})
		if n == 0 {
			ps.errorf(a.Expr.Range(), "Invalid on",
				"The list of events must not be empty; allowed: %s.", allowed("open", "exec", "access"))
		}
		if on != 0 {
			w.On = on
		}
	}
	if a := attrs["exclude"]; a != nil {
		ps.list(a, func(ex hcl.Expression, v cty.Value) {
			s := v.AsString()
			g, err := compileGlob(s)
			if err != nil {
				ps.errorf(ex.Range(), "Invalid exclude", "Glob %q: %v.", s, err)
				return
			}
			w.Exclude = append(w.Exclude, s)
			w.globs = append(w.globs, g)
		})
	}
	if a := attrs["on_error"]; a != nil {
		if v, ok := enum(ps, a, OnErrorAllow, OnErrorDeny); ok {
			w.OnError = v
		}
	}
	if a := attrs["max_file_size"]; a != nil {
		if n, ok := ps.size(a); ok {
			w.MaxFileSize = n
		}
	}

	label := b.Labels[0]
	if !filepath.IsAbs(label) {
		ps.errorf(w.Range, "Relative watch path",
			"Got %q; a watch path must be absolute, e.g. \"/srv/uploads\".", label)
		return nil
	}
	w.Path = filepath.Clean(label)
	return w
}

func (ps *parser) exclude(b *hcl.Block, x *Exclude) {
	content, diags := b.Body.Content(excludeSchema)
	ps.diags = append(ps.diags, diags...)
	if a := content.Attributes["uids"]; a != nil {
		ps.listOf(a, cty.Number, func(ex hcl.Expression, _ cty.Value) {
			if n, ok := ps.integer(ex, "uids", 0, math.MaxUint32); ok {
				x.UIDs = append(x.UIDs, uint32(n))
			}
		})
	}
	if a := content.Attributes["programs"]; a != nil {
		ps.list(a, func(ex hcl.Expression, v cty.Value) {
			if p, ok := ps.absPath(ex.Range(), "programs", v.AsString()); ok {
				x.Programs = append(x.Programs, p)
			}
		})
	}
}

// value evaluates a constant expression: policies have no variables.
func (ps *parser) value(ex hcl.Expression, name string, want cty.Type) (cty.Value, bool) {
	v, diags := ex.Value(nil)
	ps.diags = append(ps.diags, diags...)
	if diags.HasErrors() {
		return cty.NilVal, false
	}
	if v.IsNull() || !v.IsWhollyKnown() || !v.Type().Equals(want) {
		ps.errorf(ex.Range(), "Invalid "+name, "A %s is required, got %s.", want.FriendlyName(), typeName(v))
		return cty.NilVal, false
	}
	return v, true
}

func typeName(v cty.Value) string {
	if v.IsNull() {
		return "null"
	}
	return v.Type().FriendlyName()
}

func (ps *parser) str(a *hcl.Attribute) (string, bool) {
	v, ok := ps.value(a.Expr, a.Name, cty.String)
	if !ok {
		return "", false
	}
	return v.AsString(), true
}

func (ps *parser) boolean(a *hcl.Attribute) (bool, bool) {
	v, ok := ps.value(a.Expr, a.Name, cty.Bool)
	if !ok {
		return false, false
	}
	return v.True(), true
}

func (ps *parser) integer(ex hcl.Expression, name string, lo, hi int64) (int64, bool) {
	v, ok := ps.value(ex, name, cty.Number)
	if !ok {
		return 0, false
	}
	bf := v.AsBigFloat()
	n, acc := bf.Int64()
	if !bf.IsInt() || acc != big.Exact || n < lo || n > hi {
		ps.errorf(ex.Range(), "Invalid "+name, "Got %s; a whole number from %d to %d is required.", bf.Text('g', 10), lo, hi)
		return 0, false
	}
	return n, true
}

func (ps *parser) duration(a *hcl.Attribute) (time.Duration, bool) {
	s, ok := ps.str(a)
	if !ok {
		return 0, false
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		ps.errorf(a.Expr.Range(), "Invalid "+a.Name,
			"Got %q; a positive duration such as \"5s\" or \"500ms\" is required.", s)
		return 0, false
	}
	return d, true
}

// size takes a byte count: a whole number (1048576) or a string that
// ParseSize reads ("100MiB").
func (ps *parser) size(a *hcl.Attribute) (int64, bool) {
	v, diags := a.Expr.Value(nil)
	ps.diags = append(ps.diags, diags...)
	if diags.HasErrors() {
		return 0, false
	}
	rng := a.Expr.Range()
	switch {
	case v.IsNull() || !v.IsWhollyKnown():
	case v.Type().Equals(cty.String):
		n, err := ParseSize(v.AsString())
		if err != nil {
			ps.errorf(rng, "Invalid "+a.Name, "%s", sentence(err))
			return 0, false
		}
		return n, true
	case v.Type().Equals(cty.Number):
		bf := v.AsBigFloat()
		n, acc := bf.Int64()
		switch {
		case !bf.IsInt() || bf.Sign() <= 0:
			ps.errorf(rng, "Invalid "+a.Name,
				"Got %s; a size in bytes must be a positive whole number, or a string such as \"100MiB\".", bf.Text('g', 10))
			return 0, false
		case acc != big.Exact:
			ps.errorf(rng, "Invalid "+a.Name, "Got %s; the size is too large.", bf.Text('g', 10))
			return 0, false
		}
		return n, true
	}
	ps.errorf(rng, "Invalid "+a.Name, "A number or string is required, got %s.", typeName(v))
	return 0, false
}

// sentence makes an error a diagnostic's Detail: errors start in lower
// case, details are sentences.
func sentence(err error) string {
	s := err.Error()
	r, n := utf8.DecodeRuneInString(s)
	return string(unicode.ToUpper(r)) + s[n:] + "."
}

func (ps *parser) absPath(rng hcl.Range, name, p string) (string, bool) {
	if !filepath.IsAbs(p) {
		ps.errorf(rng, "Invalid "+name, "Got %q; an absolute path is required.", p)
		return "", false
	}
	return filepath.Clean(p), true
}

// list calls fn for every string element of a list attribute, each with
// its own expression so errors point at the element. It returns the
// number of elements.
func (ps *parser) list(a *hcl.Attribute, fn func(hcl.Expression, cty.Value)) int {
	return ps.listOf(a, cty.String, fn)
}

func (ps *parser) listOf(a *hcl.Attribute, elem cty.Type, fn func(hcl.Expression, cty.Value)) int {
	exprs, diags := hcl.ExprList(a.Expr)
	if diags.HasErrors() {
		ps.errorf(a.Expr.Range(), "Invalid "+a.Name, "A list of %ss is required, e.g. [ ... ].", elem.FriendlyName())
		return -1
	}
	for _, ex := range exprs {
		if v, ok := ps.value(ex, a.Name, elem); ok {
			fn(ex, v)
		}
	}
	return len(exprs)
}

func enum[T ~string](ps *parser, a *hcl.Attribute, values ...T) (T, bool) {
	s, ok := ps.str(a)
	if !ok {
		return "", false
	}
	for _, v := range values {
		if string(v) == s {
			return v, true
		}
	}
	ps.errorf(a.Expr.Range(), "Invalid "+a.Name, "Got %q; allowed: %s.", s, allowed(values...))
	return "", false
}

func allowed[T ~string](values ...T) string {
	q := make([]string, len(values))
	for i, v := range values {
		q[i] = strconv.Quote(string(v))
	}
	return strings.Join(q, ", ")
}

var sizeUnits = map[string]int64{
	"": 1, "B": 1,
	"KB": 1e3, "MB": 1e6, "GB": 1e9,
	"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30,
}

// ParseSize parses a positive byte count: plain bytes ("4096") or a whole
// number with a unit: B, KB, MB, GB (powers of 1000), KiB, MiB, GiB
// (powers of 1024), e.g. "100MiB".
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	unit := strings.TrimSpace(t[i:])
	mult, ok := sizeUnits[unit]
	if i == 0 || !ok {
		return 0, fmt.Errorf("got %q; a size such as \"4096\" or \"100MiB\" is required (units: B, KB, MB, GB, KiB, MiB, GiB)", s)
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("got %q; the size is too large", s)
	}
	if n == 0 {
		return 0, fmt.Errorf("got %q; the size must be positive", s)
	}
	return n * mult, nil
}

// loopbackAddr accepts host:port where host is localhost or a loopback IP:
// metrics are served to this machine only, never to the network by a typo.
func loopbackAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("got %q; want host:port, e.g. 127.0.0.1:9464", addr)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("got port %q; want a number", port)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("got host %q; metrics listen on a loopback address only (127.0.0.1, ::1, localhost)", host)
	}
	return nil
}
