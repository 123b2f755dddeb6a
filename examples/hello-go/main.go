// Command hello-go is Slipway's example service: it greets on / and reports
// its health on /health.
package main

import (
	"fmt"
	"log"
	"net/http"
	"os"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, "{\"status\":\"ok\",\"version\":%q}\n", version)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from hello-go %s\n", version)
	})
	return mux
}

func main() {
	addr := os.Getenv("ADDR")
	if addr == "" {
		addr = ":8080"
	}
	log.Printf("hello-go %s listening on %s", version, addr)
	log.Fatal(http.ListenAndServe(addr, handler()))
}
