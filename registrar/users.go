package registrar

import "github.com/ringroute/ringroute/config"

// UserLookup is the Lookup over a configuration's users. Build it from the
// snapshot a request runs under, so a reload takes effect on the next
// request.
func UserLookup(users []*config.User) Lookup {
	byName := make(map[string]*config.User, len(users))
	for _, u := range users {
		byName[u.Name] = u
	}
	return func(name string) (string, string, bool) {
		u, ok := byName[name]
		if !ok {
			return "", "", false
		}
		return u.Password, u.HA1, true
	}
}

// UserNames are the names of users, for Registrar.Load and Reload.
func UserNames(users []*config.User) []string {
	names := make([]string, len(users))
	for i, u := range users {
		names[i] = u.Name
	}
	return names
}
