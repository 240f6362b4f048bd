package policy_test

import (
	"fmt"
	"os"

	"github.com/vigilsec/vigil/internal/policy"
)

func ExampleWriteDiagnostics() {
	src := `watch "/srv" {
  action = "kill"
}
watch "/srv/" {}
`
	_, diags := policy.Parse([]byte(src), "policy.hcl")
	policy.WriteDiagnostics(os.Stdout, diags)
	// Output:
	// policy.hcl:2,12: Error: Invalid action
	//
	//   on policy.hcl line 2, in watch "/srv":
	//    2:   action = "kill"
	//                  ^~~~~~
	//
	// Got "kill"; allowed: "block", "alert", "quarantine".
	//
	// policy.hcl:4,7: Error: Duplicate watch
	//
	//   on policy.hcl line 4, in watch "/srv/":
	//    4: watch "/srv/" {}
	//             ^~~~~~~
	//
	// "/srv" is already watched by the block at policy.hcl:1,7.
}

func ExamplePolicy_Match() {
	p, _ := policy.Parse([]byte(`
watch "/srv/uploads" { exclude = ["*.part"] }
watch "/srv/uploads/logs" { action = "alert" }
`), "policy.hcl")
	for _, path := range []string{"/srv/uploads/a.exe", "/srv/uploads/logs/x.log", "/srv/uploads/b.part", "/srv/other"} {
		w, excluded := p.Match(path)
		if w == nil {
			fmt.Printf("%s: not watched\n", path)
			continue
		}
		fmt.Printf("%s: %s by %s, excluded %v\n", path, w.Action, w.Path, excluded)
	}
	// Output:
	// /srv/uploads/a.exe: block by /srv/uploads, excluded false
	// /srv/uploads/logs/x.log: alert by /srv/uploads/logs, excluded false
	// /srv/uploads/b.part: block by /srv/uploads, excluded true
	// /srv/other: not watched
}
