// Package model holds the nouns of Dyno: apps, releases, formations, dyno
// assignments and statuses, hosts, sizes and log lines. It is shared by every
// other package and imports nothing internal; it holds data and the pure rules
// about that data (names, sizes, Procfile syntax), never I/O.
package model
