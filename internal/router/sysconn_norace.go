//go:build !race

package router

// raceSyscalls: see sysconn_race.go.
const raceSyscalls = false
