package policy

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/hashicorp/hcl/v2"
)

// sources keeps the last parsed text of each file so diagnostics can show
// the offending line long after Load returned. Keyed by filename, so a
// reload replaces rather than grows it.
var sources = struct {
	sync.Mutex
	files map[string]*hcl.File
}{files: map[string]*hcl.File{}}

func remember(filename string, src []byte, f *hcl.File) {
	if f == nil {
		f = &hcl.File{}
	}
	if f.Bytes == nil {
		// Without Bytes the text writer prints no source line.
		f = &hcl.File{Body: f.Body, Bytes: src, Nav: f.Nav}
	}
	sources.Lock()
	sources.files[filename] = f
	sources.Unlock()
}

func forget(filename string) {
	sources.Lock()
	delete(sources.files, filename)
	sources.Unlock()
}

// WriteDiagnostics prints diagnostics for people: each starts with
// FILE:LINE,COL, then the source line with a caret under the subject.
func WriteDiagnostics(w io.Writer, diags hcl.Diagnostics) error {
	sources.Lock()
	files := make(map[string]*hcl.File, len(sources.files))
	for k, v := range sources.files {
		files[k] = v
	}
	sources.Unlock()

	var buf bytes.Buffer
	tw := hcl.NewDiagnosticTextWriter(&buf, files, 0, false)
	for _, d := range diags {
		buf.Reset()
		if err := tw.WriteDiagnostic(d); err != nil {
			return err
		}
		out := buf.String()
		if s := d.Subject; s != nil {
			out = fmt.Sprintf("%s:%d,%d: %s", s.Filename, s.Start.Line, s.Start.Column, out)
			if f := files[s.Filename]; f != nil && f.Bytes != nil {
				out = withCaret(out, f.Bytes, *s)
			}
		}
		if _, err := io.WriteString(w, out); err != nil {
			return fmt.Errorf("write diagnostics: %w", err)
		}
	}
	return nil
}

// withCaret inserts a line marking the subject under the source line the
// text writer printed as "%4d: text": it underlines with color only.
func withCaret(out string, src []byte, s hcl.Range) string {
	prefix := fmt.Sprintf("%4d: ", s.Start.Line)
	at := strings.Index(out, "\n"+prefix)
	if at < 0 || s.Start.Byte > len(src) {
		return out
	}
	eol := strings.IndexByte(out[at+1:], '\n')
	if eol < 0 {
		return out
	}
	eol += at + 1

	lineStart := bytes.LastIndexByte(src[:s.Start.Byte], '\n') + 1
	var pad strings.Builder
	pad.WriteString(strings.Repeat(" ", len(prefix)))
	for _, r := range string(src[lineStart:s.Start.Byte]) {
		if r == '\t' {
			pad.WriteByte('\t') // keep tabs so the caret lines up
		} else {
			pad.WriteByte(' ')
		}
	}
	width := 1
	if s.End.Line == s.Start.Line && s.End.Column > s.Start.Column {
		width = s.End.Column - s.Start.Column
	}
	caret := pad.String() + "^" + strings.Repeat("~", width-1)
	return out[:eol+1] + caret + "\n" + out[eol+1:]
}
