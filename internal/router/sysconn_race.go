//go:build race

package router

// raceSyscalls keeps sysConn out of race-detector builds: the detector
// does not see the memory a raw system call reads or writes, nor the
// ordering that syscall.Read and Write give it through I/O.
const raceSyscalls = true
