package messages

// Regenerates checkin.pb.go and checkin_grain.pb.go. Needs protoc (3.21+),
// protoc-gen-go and protoc-gen-go-grain at the versions pinned in the README.
//go:generate sh -c "protoc -I . -I $(go list -m -f '{{.Dir}}' github.com/asynkron/protoactor-go) --go_out=. --go_opt=paths=source_relative --go-grain_out=. --go-grain_opt=paths=source_relative checkin.proto"
