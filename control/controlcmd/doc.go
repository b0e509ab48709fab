// Package controlcmd is `drover command`: send a command to a device
// (optionally waiting for its reply), show one command's lifecycle, list
// a device's commands. It is the thin cobra layer over package control.
package controlcmd
