package registrar

import (
	"slices"
	"testing"

	"github.com/ringroute/ringroute/config"
)

func TestUserLookup(t *testing.T) {
	users := []*config.User{{Name: "alice", Password: "pw"}, {Name: "hank", HA1: "abc"}}
	l := UserLookup(users)
	if pw, ha1, ok := l("alice"); pw != "pw" || ha1 != "" || !ok {
		t.Errorf("alice: %q %q %v", pw, ha1, ok)
	}
	if pw, ha1, ok := l("hank"); pw != "" || ha1 != "abc" || !ok {
		t.Errorf("hank: %q %q %v", pw, ha1, ok)
	}
	if _, _, ok := l("nobody"); ok {
		t.Error("unknown user found")
	}
	if got := UserNames(users); !slices.Equal(got, []string{"alice", "hank"}) {
		t.Errorf("UserNames %v", got)
	}
}
