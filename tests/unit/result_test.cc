#include "result.h"

#include <catch2/catch.hpp>
#include <string>

using artifact::ErrorCode;
using artifact::HttpStatus;
using artifact::ReasonPhrase;

TEST_CASE("reason phrases come from the table, never a generic word", "[result]") {
  // What the API answers on success (issue, revoke with a background seal,
  // revoke without a seal, the latest redirect) and the statuses nginx
  // passes on from it.
  CHECK(std::string(ReasonPhrase(200)) == "OK");
  CHECK(std::string(ReasonPhrase(201)) == "Created");
  CHECK(std::string(ReasonPhrase(202)) == "Accepted");
  CHECK(std::string(ReasonPhrase(204)) == "No Content");
  CHECK(std::string(ReasonPhrase(302)) == "Found");
  CHECK(std::string(ReasonPhrase(413)) == "Content Too Large");
  // Every error the API can map to a status has its own phrase.
  for (ErrorCode code : {ErrorCode::kBadRequest, ErrorCode::kUnauthorized, ErrorCode::kForbidden,
                         ErrorCode::kNotFound, ErrorCode::kMethodNotAllowed, ErrorCode::kConflict,
                         ErrorCode::kPayloadTooLarge, ErrorCode::kUnsupportedMediaType, ErrorCode::kInternal,
                         ErrorCode::kUnavailable, ErrorCode::kInsufficientStorage}) {
    const std::string phrase = ReasonPhrase(HttpStatus(code));
    INFO(HttpStatus(code) << " " << phrase);
    CHECK(phrase != "Client Error");
    CHECK(phrase != "Server Error");
    CHECK(phrase != "Error");
  }
  // Outside the table: the status class (RFC 9110 section 15), never "Error".
  CHECK(std::string(ReasonPhrase(418)) == "Client Error");
  CHECK(std::string(ReasonPhrase(599)) == "Server Error");
  CHECK(std::string(ReasonPhrase(299)) == "Successful");
}
