// Package messages holds the protobuf messages that cross actor boundaries
// in checkin (grain calls between nodes, commands to writer actors) and the
// code generated from them. Everything here except generate.go and doc.go is
// generated: edit checkin.proto and run `make proto`.
package messages
