#include "issue_body.h"

#include <Poco/Dynamic/Var.h>
#include <Poco/Exception.h>
#include <Poco/JSON/Array.h>
#include <Poco/JSON/JSONException.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/ParseHandler.h>
#include <Poco/JSON/Parser.h>
#include <Poco/URI.h>

#include <map>
#include <set>
#include <vector>

#include "split.h"

namespace artifact {
namespace {

Error Bad(const std::string& m) { return Error{ErrorCode::kBadRequest, m}; }

// "application/json; charset=utf-8" -> "application/json"
std::string MediaType(const std::string& content_type) {
  std::string t = content_type.substr(0, content_type.find(';'));
  while (!t.empty() && t.back() == ' ') t.pop_back();
  for (char& c : t) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  return t;
}

Result<int64_t> TtlFromText(const std::string& s) {
  auto v = ParseDigits(s, 10);
  if (!v || *v <= 0) return Bad("ttl must be a positive number of seconds");
  return *v;
}

Result<int64_t> TtlFromJson(const Poco::Dynamic::Var& v) {
  if (!v.isInteger() || v.isBoolean()) return Bad("ttl must be a positive integer");
  try {
    auto n = v.convert<Poco::Int64>();
    if (n <= 0 || n > 9999999999) return Bad("ttl must be a positive number of seconds");
    return static_cast<int64_t>(n);
  } catch (const Poco::Exception&) {
    return Bad("ttl must be a positive number of seconds");
  }
}

Result<bool> BoolFromText(const std::string& s) {
  if (s == "true" || s == "1" || s == "yes") return true;
  if (s == "false" || s == "0" || s == "no") return false;
  return Bad("reopen must be true or false");
}

using FormFields = std::multimap<std::string, std::string>;

Result<FormFields> ParseForm(const std::string& body) {
  FormFields fields;
  std::string::size_type start = 0;
  while (start <= body.size()) {
    auto amp = body.find('&', start);
    std::string pair = body.substr(start, amp == std::string::npos ? std::string::npos : amp - start);
    start = amp == std::string::npos ? body.size() + 1 : amp + 1;
    if (pair.empty()) continue;
    auto eq = pair.find('=');
    std::string key, value;
    try {
      Poco::URI::decode(pair.substr(0, eq), key, true);
      if (eq != std::string::npos) Poco::URI::decode(pair.substr(eq + 1), value, true);
    } catch (const Poco::Exception&) {
      return Bad("malformed form body");
    }
    fields.emplace(key, value);
  }
  return fields;
}

// Poco keeps the last of duplicate keys silently; a body that says two
// things at once is refused instead (RFC 8259 leaves it undefined).
class StrictHandler : public Poco::JSON::ParseHandler {
 public:
  StrictHandler() : Poco::JSON::ParseHandler(true) {}
  void startObject() override {
    keys_.emplace_back();
    ParseHandler::startObject();
  }
  void endObject() override {
    keys_.pop_back();
    ParseHandler::endObject();
  }
  void key(const std::string& k) override {
    if (!keys_.back().insert(k).second) throw Poco::JSON::JSONException("duplicate key");
    ParseHandler::key(k);
  }

 private:
  std::vector<std::set<std::string>> keys_;
};

// Our bodies are flat; deeper nesting is refused before it costs anything.
constexpr size_t kMaxJsonDepth = 8;

Result<Poco::JSON::Object::Ptr> ParseJsonObject(const std::string& body) {
  try {
    Poco::JSON::Parser parser(new StrictHandler);
    parser.setDepth(kMaxJsonDepth);
    Poco::Dynamic::Var v = parser.parse(body);
    if (v.type() != typeid(Poco::JSON::Object::Ptr)) return Bad("the body must be a JSON object");
    return v.extract<Poco::JSON::Object::Ptr>();
  } catch (const Poco::JSON::JSONException& e) {
    if (e.message() == "duplicate key") return Bad("invalid JSON body: duplicate key");
    return Bad("invalid JSON body");
  } catch (const Poco::Exception&) {
    return Bad("invalid JSON body");
  } catch (const std::exception&) {
    return Bad("invalid JSON body");
  }
}

Error UnknownField(const std::string& key) {
  // `username` was the name of a token chosen by its master until names
  // became per master (a chosen name could tell one master another's).
  const std::string hint = key == "username" ? "; the server names tokens: send request_id to name a retry" : "";
  return Bad("unknown field '" + key + "' (known: scope, scopes, ttl, request_id, reopen)" + hint);
}

}  // namespace

Result<IssueBody> ParseIssueBody(const std::string& content_type, const std::string& body) {
  IssueBody out;
  const std::string type = MediaType(content_type);
  if (type == "application/json") {
    auto obj = ParseJsonObject(body);
    if (!obj) return obj.error();
    bool have_scope = false;
    for (const auto& [key, value] : *obj.value()) {
      if (key == "scope") {
        if (!value.isString()) return Bad("scope must be a string");
        out.scopes.push_back(value.extract<std::string>());
        have_scope = true;
      } else if (key == "scopes") {
        if (value.type() != typeid(Poco::JSON::Array::Ptr)) return Bad("scopes must be an array of strings");
        for (const auto& s : *value.extract<Poco::JSON::Array::Ptr>()) {
          if (!s.isString()) return Bad("scopes must be an array of strings");
          out.scopes.push_back(s.extract<std::string>());
        }
        if (out.scopes.empty()) return Bad("scopes must not be empty");
      } else if (key == "ttl") {
        auto ttl = TtlFromJson(value);
        if (!ttl) return ttl.error();
        out.ttl = ttl.value();
      } else if (key == "request_id") {
        if (!value.isString()) return Bad("request_id must be a string");
        out.request_id = value.extract<std::string>();
      } else if (key == "reopen") {
        if (!value.isBoolean()) return Bad("reopen must be true or false");
        out.reopen = value.extract<bool>();
      } else {
        return UnknownField(key);
      }
    }
    if (have_scope && obj.value()->has("scopes")) return Bad("give either scope or scopes, not both");
  } else if (type == "application/x-www-form-urlencoded") {
    auto form = ParseForm(body);
    if (!form) return form.error();
    if (form->count("scope") > 0 && form->count("scopes") > 0) return Bad("give either scope or scopes, not both");
    for (const auto& [key, value] : form.value()) {
      if (key == "scope" || key == "scopes") {
        out.scopes.push_back(value);
      } else if (key == "ttl" || key == "request_id" || key == "reopen") {
        if (form->count(key) > 1) return Bad(key + " given twice");
        if (key == "ttl") {
          auto ttl = TtlFromText(value);
          if (!ttl) return ttl.error();
          out.ttl = ttl.value();
        } else if (key == "request_id") {
          out.request_id = value;
        } else {
          auto b = BoolFromText(value);
          if (!b) return b.error();
          out.reopen = b.value();
        }
      } else {
        return UnknownField(key);
      }
    }
  } else {
    return Error{ErrorCode::kUnsupportedMediaType,
                 "send application/json or application/x-www-form-urlencoded"};
  }
  if (out.scopes.empty()) return Bad("a scope is required");
  return out;
}

Result<std::optional<int64_t>> ParseTtlBody(const std::string& content_type, const std::string& body) {
  std::optional<int64_t> ttl;
  const std::string type = MediaType(content_type);
  if (body.empty()) return ttl;
  if (type == "application/json") {
    auto obj = ParseJsonObject(body);
    if (!obj) return obj.error();
    for (const auto& [key, value] : *obj.value()) {
      if (key != "ttl") return Bad("unknown field '" + key + "' (known: ttl)");
      auto t = TtlFromJson(value);
      if (!t) return t.error();
      ttl = t.value();
    }
  } else if (type == "application/x-www-form-urlencoded") {
    auto form = ParseForm(body);
    if (!form) return form.error();
    for (const auto& [key, value] : form.value()) {
      if (key != "ttl" || form->count(key) > 1) return Bad("expected one field ttl");
      auto t = TtlFromText(value);
      if (!t) return t.error();
      ttl = t.value();
    }
  } else {
    return Error{ErrorCode::kUnsupportedMediaType,
                 "send application/json or application/x-www-form-urlencoded"};
  }
  return ttl;
}

}  // namespace artifact
