package apiserver

import (
	"net/http"

	"github.com/dyno-platform/dyno/internal/dashboard"
)

// mountDashboard serves the web dashboard (package dashboard) at
// /dashboard/ without auth (its files hold no secret: the page calls this
// API with the user's key) and sends browsers asking for "/" there;
// notFoundAPI answers "/" for API clients as before.
func (s *Server) mountDashboard(m *http.ServeMux, notFoundAPI http.Handler) {
	d, err := dashboard.New()
	if err != nil { // only a binary built with a broken file set
		s.log.Error("web dashboard off", "err", err)
		return
	}
	d.Mount(m, notFoundAPI)
}
