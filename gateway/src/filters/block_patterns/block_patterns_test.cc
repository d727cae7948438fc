#include "filters/block_patterns/block_patterns.h"

#include <gtest/gtest.h>

#include <string>

#include "filter/reasons.h"

namespace bulwark::gateway::filters {
namespace {

std::string folded(std::string_view text, bool form = false) {
  std::string out;
  fold_for_scan(text, form, out);
  return out;
}

PatternKind kind_of(std::string_view path, std::string_view query = {},
                    config::BlockPatternsSpec kinds = {}) {
  std::string scratch;
  return scan_target(path, query, kinds, scratch).kind;
}

TEST(BlockPatternsFold, DecodesTwiceLowerCasesAndFoldsBlanksAndComments) {
  EXPECT_EQ(folded("%253Cscript%253E"), "<script>");
  EXPECT_EQ(folded("UNION/**/SELECT"), "union select");
  EXPECT_EQ(folded("union%20%09%0a select"), "union select");
  EXPECT_EQ(folded("a+b", true), "a b");
  EXPECT_EQ(folded("a+b", false), "a+b");
  EXPECT_EQ(folded("x onerror = alert ( 1 )"), "x onerror=alert(1 )");
  // An unclosed comment hides nothing.
  EXPECT_EQ(folded("/x/*' or 1=1"), "/x/*' or 1=1");
  // Malformed escapes are kept as they are.
  EXPECT_EQ(folded("%zz%4"), "%zz%4");
  EXPECT_LE(folded("%41%42%43").size(), std::string_view("%41%42%43").size());
}

TEST(BlockPatternsScan, FindsSqlInjectionShapesInThePathAndTheQuery) {
  EXPECT_EQ(kind_of("/items", "id=1%27%20OR%20%271%27=%271"), PatternKind::sqli);
  EXPECT_EQ(kind_of("/items", "id=1+UNION+ALL+SELECT+password+FROM+users"), PatternKind::sqli);
  EXPECT_EQ(kind_of("/items", "id=1;DROP%20TABLE%20users"), PatternKind::sqli);
  EXPECT_EQ(kind_of("/items", "id=1%20or%201%20=%201"), PatternKind::sqli);
  EXPECT_EQ(kind_of("/items", "q=x%27--"), PatternKind::sqli);
  EXPECT_EQ(kind_of("/items", "q=SLEEP(5)"), PatternKind::sqli);
  EXPECT_EQ(kind_of("/a/union%20select/b"), PatternKind::sqli);
  EXPECT_EQ(kind_of("/items", "q=1%2527%2520or%25201=1"), PatternKind::sqli);  // double
}

TEST(BlockPatternsScan, FindsCrossSiteScriptShapes) {
  EXPECT_EQ(kind_of("/search", "q=%3Cscript%3Ealert(1)%3C/script%3E"), PatternKind::xss);
  EXPECT_EQ(kind_of("/search", "q=%3CSVG/onload=alert(1)%3E"), PatternKind::xss);
  EXPECT_EQ(kind_of("/search", "next=JavaScript:alert(document.cookie)"), PatternKind::xss);
  EXPECT_EQ(kind_of("/search", "q=%22%20onmouseover=%22x"), PatternKind::xss);
  EXPECT_EQ(kind_of("/p/%3Ciframe%20src=x%3E"), PatternKind::xss);
}

TEST(BlockPatternsScan, LeavesOrdinaryRequestsAlone) {
  for (const auto& [path, query] :
       std::initializer_list<std::pair<std::string_view, std::string_view>>{
           {"/", ""},
           {"/api/v1/users/42", "fields=name,email&sort=-created"},
           {"/search", "q=rock+or+roll"},
           {"/search", "q=o%27reilly+books"},
           {"/search", "q=color+1%3D1"},             // "or 1=1" inside a word
           {"/docs/select-from-the-menu", ""},       // words, not a statement
           {"/events", "onload=true&onerror=skip"},  // parameters, not attributes
           {"/math", "q=a%3Cb"},
           {"/files/report%20(final).pdf", ""},
           {"/blog/evaluation", "topic=prompts"},
       }) {
    EXPECT_EQ(kind_of(path, query), PatternKind::none) << path << "?" << query;
  }
}

TEST(BlockPatternsScan, OnlyTheEnabledKindsAreLookedFor) {
  EXPECT_EQ(kind_of("/s", "q=%3Cscript%3E", {.sqli = true, .xss = false}), PatternKind::none);
  EXPECT_EQ(kind_of("/s", "q=1+union+select+2", {.sqli = false, .xss = true}), PatternKind::none);
}

TEST(BlockPatternsFilter, RefusesWith400AndCountsByKind) {
  bulwark::observe::Counter sqli;
  bulwark::observe::Counter xss;
  const BlockPatternsFilter filter({}, &sqli, &xss);
  filter::FilterState state;
  filter::RequestInfo request;
  request.path = "/items";
  request.query = "id=1+union+select+2";
  const filter::LocalReply refused = filter.on_request(request, state);
  EXPECT_EQ(refused.status, 400);
  EXPECT_EQ(refused.reason, reason::kBlockedPattern);
  EXPECT_FALSE(refused.close);
  request.query = "q=%3Cscript%3E";
  request.has_body = true;
  EXPECT_TRUE(filter.on_request(request, state).close);  // the unread body
  request.query = "id=7";
  EXPECT_FALSE(filter.on_request(request, state));
  EXPECT_EQ(sqli.value(), 1);
  EXPECT_EQ(xss.value(), 1);
}

}  // namespace
}  // namespace bulwark::gateway::filters
