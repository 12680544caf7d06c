package admin

import (
	"encoding/json"
	"net/http"
)

// Error codes of the REST API, in the x-ms-error-code header and the
// ErrorDetail body's code. The Management SDK treats a 404 as an expected
// answer only with the first five (RestHubLifetimeManager); the others are
// edgeplane's, named the same way ({level}.{scope}.{kind}).
const (
	codeConnNotExisted      = "Warning.Connection.NotExisted" // HEAD, DELETE of a connection
	codeUserNotExisted      = "Warning.User.NotExisted"
	codeGroupNotExisted     = "Warning.Group.NotExisted"
	codeUserNotInGroup      = "Info.User.NotInGroup"
	codeAddConnNotExisted   = "Error.Connection.NotExisted" // adding a connection to a group
	codeHubNotExisted       = "Error.Hub.NotExisted"
	codeInvalid             = "Error.Request.Invalid"
	codeUnauthorized        = "Error.Request.Unauthorized"
	codeForbidden           = "Error.Request.Forbidden"
	codeTooLarge            = "Error.Request.TooLarge"
	codeNotImplemented      = "Error.Request.NotImplemented"
	codeUnavailable         = "Error.Service.Unavailable"
	codeInternal            = "Error.Service.Internal"
	headerErrorCode         = "x-ms-error-code"
	contentTypeJSON         = "application/json"
	contentTypeJSONUTF8     = "application/json; charset=utf-8"
	contentTypeOctetStream  = "application/octet-stream"
	contentTypeXMessagePack = "application/x-msgpack"
)

// errorDetail is the body of an error answer (the API's ErrorDetail).
type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Target  string `json:"target,omitempty"`
}

// restError answers status with an ErrorDetail body and the
// x-ms-error-code header (a HEAD answer carries the header alone).
func restError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set(headerErrorCode, code)
	w.Header().Set("Content-Type", contentTypeJSONUTF8)
	w.WriteHeader(status)
	writeJSON(w, errorDetail{Code: code, Message: msg})
}

// writeJSON writes v as the body (the header is written already); an
// error writing is the client's, gone.
func writeJSON(w http.ResponseWriter, v any) {
	_ = json.NewEncoder(w).Encode(v)
}

// apiError answers status with the generic code for it.
func apiError(w http.ResponseWriter, status int, msg string) {
	restError(w, status, statusCode(status), msg)
}

func statusCode(status int) string {
	switch status {
	case http.StatusBadRequest:
		return codeInvalid
	case http.StatusUnauthorized:
		return codeUnauthorized
	case http.StatusForbidden:
		return codeForbidden
	case http.StatusRequestEntityTooLarge:
		return codeTooLarge
	case http.StatusNotImplemented:
		return codeNotImplemented
	case http.StatusServiceUnavailable:
		return codeUnavailable
	}
	return codeInternal
}
