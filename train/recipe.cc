// Recipe parsing: yaml-cpp builds the node tree (its exceptions stop here), a small strict field
// reader walks it (types, ranges, unknown and duplicate keys, all with file:line:column and the
// field path), then cross-field rules and path resolution. Every problem is collected, so one
// run reports them all.
#include "train/recipe.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace anvil::train {
namespace {

constexpr size_t kMaxRecipeBytes = 1 << 20;

// Optimal-string-alignment distance (a transposition costs 1), for "did you mean".
size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1,
                          d[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

std::string Suggest(const std::string& got, const std::vector<std::string>& known) {
  std::string best;
  size_t best_d = 3;  // suggest only close matches
  for (const std::string& k : known) {
    const size_t d = EditDistance(got, k);
    if (d < best_d && d < k.size()) {
      best_d = d;
      best = k;
    }
  }
  return best.empty() ? "" : absl::StrCat(" (did you mean \"", best, "\"?)");
}

std::string Describe(const YAML::Node& n) {
  if (n.IsNull()) return "null";
  if (n.IsSequence()) return "a list";
  if (n.IsMap()) return "a mapping";
  std::string s = n.Scalar();
  if (s.size() > 40) s = s.substr(0, 37) + "...";
  return absl::StrCat("\"", s, "\"");
}

// Problems with their place in the file; sorted by position when reported.
class Errors {
 public:
  explicit Errors(std::string name) : name_(std::move(name)) {}
  void Add(const YAML::Node* at, const std::string& path, const std::string& msg) {
    int line = -1, col = -1;
    if (at != nullptr && at->IsDefined()) {
      line = at->Mark().line;
      col = at->Mark().column;
    }
    items_.push_back({line < 0 ? INT32_MAX : line, col,
                      absl::StrCat(name_, line >= 0 ? absl::StrCat(":", line + 1, ":", col + 1) : "",
                                   ": ", path, path.empty() ? "" : ": ", msg)});
  }
  bool empty() const { return items_.empty(); }
  absl::Status ToStatus() {
    if (items_.empty()) return absl::OkStatus();
    std::stable_sort(items_.begin(), items_.end(), [](const Item& a, const Item& b) {
      return std::pair(a.line, a.col) < std::pair(b.line, b.col);
    });
    std::vector<std::string> lines;
    for (const Item& i : items_) lines.push_back(i.text);
    return absl::InvalidArgumentError(absl::StrJoin(lines, "\n"));
  }

 private:
  struct Item {
    int line, col;
    std::string text;
  };
  std::string name_;
  std::vector<Item> items_;
};

struct Range {  // for numbers; an open end excludes its bound
  double lo = -HUGE_VAL, hi = HUGE_VAL;
  bool lo_open = false, hi_open = false;
  std::string Text() const {
    if (hi == HUGE_VAL) return absl::StrCat(lo_open ? "> " : ">= ", lo);
    return absl::StrCat("in ", lo_open ? "(" : "[", lo, ", ", hi, hi_open ? ")" : "]");
  }
  bool Contains(double v) const {
    return (lo_open ? v > lo : v >= lo) && (hi_open ? v < hi : v <= hi);
  }
};
constexpr Range kPositive{0, HUGE_VAL, true, false};
constexpr Range kNonNegative{0, HUGE_VAL, false, false};
constexpr Range kUnitOpen{0, 1, false, true};  // [0, 1)

// One mapping of the recipe. Getters leave `out` alone when the key is absent and report
// problems; Finish() reports the keys nobody asked for.
class Section {
 public:
  Section(const YAML::Node& node, std::string path, Errors* errors)
      : path_(std::move(path)), errors_(errors) {
    if (!node.IsDefined()) return;
    if (!node.IsMap()) {
      errors_->Add(&node, path_, absl::StrCat("expected a mapping, got ", Describe(node)));
      return;
    }
    for (auto it = node.begin(); it != node.end(); ++it) {
      const YAML::Node key = it->first;
      if (!key.IsScalar()) {
        errors_->Add(&key, path_, "keys must be plain names");
        continue;
      }
      auto [pos, fresh] = fields_.emplace(key.Scalar(), std::pair(key, it->second));
      if (!fresh) {
        errors_->Add(&key, Path(key.Scalar()),
                     absl::StrCat("given twice (first on line ", pos->second.first.Mark().line + 1,
                                  ")"));
      }
    }
  }

  bool Has(const std::string& key) const { return fields_.count(key) > 0; }
  const YAML::Node* KeyNode(const std::string& key) const {
    auto it = fields_.find(key);
    return it == fields_.end() ? nullptr : &it->second.first;
  }
  std::string Path(const std::string& key) const {
    return path_.empty() ? std::string(key) : absl::StrCat(path_, ".", key);
  }

  Section Child(const std::string& key) { return Section(Get(key), Path(key), errors_); }

  void Int(const std::string& key, int64_t* out, int64_t lo, int64_t hi = INT64_MAX) {
    const YAML::Node n = Get(key);
    if (!n.IsDefined()) return;
    int64_t v = 0;
    if (!IsPlain(n) || !absl::SimpleAtoi(n.Scalar(), &v)) return Bad(n, key, "integer");
    if (v < lo || v > hi) {
      return Fail(n, key, absl::StrCat("must be ", hi == INT64_MAX ? ">= " : "in [", lo,
                                       hi == INT64_MAX ? "" : absl::StrCat(", ", hi, "]"),
                                       ", got ", v));
    }
    *out = v;
  }
  void Seed(const std::string& key, uint64_t* out) {
    const YAML::Node n = Get(key);
    if (!n.IsDefined()) return;
    uint64_t v = 0;
    if (!IsPlain(n) || n.Scalar().find('-') != std::string::npos ||
        !absl::SimpleAtoi(n.Scalar(), &v)) {
      return Bad(n, key, "non-negative integer");
    }
    *out = v;
  }
  void Number(const std::string& key, double* out, const Range& range) {
    const YAML::Node n = Get(key);
    if (!n.IsDefined()) return;
    double v = 0;
    if (!IsPlain(n) || !absl::SimpleAtod(n.Scalar(), &v) || !std::isfinite(v)) {
      return Bad(n, key, "number");
    }
    if (!range.Contains(v)) return Fail(n, key, absl::StrCat("must be ", range.Text(), ", got ", v));
    *out = v;
  }
  void Number(const std::string& key, float* out, const Range& range) {
    double v = *out;
    Number(key, &v, range);
    *out = static_cast<float>(v);
  }
  void Bool(const std::string& key, bool* out) {
    const YAML::Node n = Get(key);
    if (!n.IsDefined()) return;
    const std::string s = IsPlain(n) ? n.Scalar() : "";
    if (s == "true" || s == "True" || s == "TRUE") {
      *out = true;
    } else if (s == "false" || s == "False" || s == "FALSE") {
      *out = false;
    } else {
      Bad(n, key, "true or false");
    }
  }
  void String(const std::string& key, std::string* out) {
    const YAML::Node n = Get(key);
    if (!n.IsDefined()) return;
    if (!n.IsScalar() || n.IsNull()) return Bad(n, key, "string");
    if (n.Scalar().empty()) return Fail(n, key, "must not be empty");
    *out = n.Scalar();
  }
  template <typename E>
  void Enum(const std::string& key, const std::vector<std::pair<std::string, E>>& choices, E* out) {
    const YAML::Node n = Get(key);
    if (n.IsDefined()) ParseEnum(n, Path(key), choices, out);
  }
  template <typename E>
  void EnumList(const std::string& key, const std::vector<std::pair<std::string, E>>& choices,
                std::vector<E>* out) {
    const YAML::Node n = Get(key);
    if (!n.IsDefined()) return;
    if (!n.IsSequence()) return Bad(n, key, "a list");
    std::vector<E> values;
    for (size_t i = 0; i < n.size(); ++i) {
      E v{};
      const std::string path = absl::StrCat(Path(key), "[", i, "]");
      const YAML::Node item = n[i];
      if (!ParseEnum(item, path, choices, &v)) return;
      if (std::find(values.begin(), values.end(), v) != values.end()) {
        return errors_->Add(&item, path, absl::StrCat("\"", item.Scalar(), "\" listed twice"));
      }
      values.push_back(v);
    }
    *out = std::move(values);
  }

  void Finish() const {
    for (const auto& [key, kv] : fields_) {
      if (std::find(asked_.begin(), asked_.end(), key) == asked_.end()) {
        errors_->Add(&kv.first, Path(key), absl::StrCat("unknown field", Suggest(key, asked_)));
      }
    }
  }

 private:
  static bool IsPlain(const YAML::Node& n) { return n.IsScalar() && n.Tag() == "?"; }

  YAML::Node Get(const std::string& key) {
    asked_.push_back(key);
    auto it = fields_.find(key);
    return it == fields_.end() ? YAML::Node(YAML::NodeType::Undefined) : it->second.second;
  }
  void Bad(const YAML::Node& n, const std::string& key, const std::string& expected) {
    Fail(n, key, absl::StrCat("expected ", expected, ", got ", Describe(n)));
  }
  void Fail(const YAML::Node& n, const std::string& key, const std::string& msg) {
    errors_->Add(&n, Path(key), msg);
  }
  template <typename E>
  bool ParseEnum(const YAML::Node& n, const std::string& path,
                 const std::vector<std::pair<std::string, E>>& choices, E* out) {
    std::vector<std::string> names;
    for (const auto& [name, value] : choices) {
      names.push_back(name);
      if (n.IsScalar() && !n.IsNull() && n.Scalar() == name) {
        *out = value;
        return true;
      }
    }
    errors_->Add(&n, path, absl::StrCat("expected one of ", absl::StrJoin(names, ", "), "; got ",
                                        Describe(n), n.IsScalar() ? Suggest(n.Scalar(), names) : ""));
    return false;
  }

  std::string path_;
  Errors* errors_;
  std::map<std::string, std::pair<YAML::Node, YAML::Node>> fields_;
  std::vector<std::string> asked_;
};

// {name, value} for the first `n` values of a dense enum, named by `name`.
template <typename E>
std::vector<std::pair<std::string, E>> Choices(int n, const char* (*name)(E)) {
  std::vector<std::pair<std::string, E>> out;
  for (int i = 0; i < n; ++i) out.emplace_back(name(static_cast<E>(i)), static_cast<E>(i));
  return out;
}

std::string ResolvePath(const std::string& p, const std::string& base_dir) {
  if (p.empty()) return p;
  if (p == "~" || p.rfind("~/", 0) == 0) {
    const char* home = std::getenv("HOME");
    return absl::StrCat(home != nullptr ? home : "", p.substr(1));
  }
  const std::filesystem::path path(p);
  if (path.is_absolute() || base_dir.empty()) return p;
  return (std::filesystem::path(base_dir) / path).lexically_normal().string();
}

// Each reader below takes one group of sections, checks its own cross-field rules (method and
// loss are read first) and reports unknown keys. Keys are read in the documented order.
// Returns whether data.seed was given (it defaults to train.seed).
bool ReadData(Section& top, Errors* errors, Recipe* r) {
  Section data = top.Child("data");
  data.String("train", &r->data.train);
  data.String("eval", &r->data.eval);
  data.Int("max_length", &r->data.max_length, 2, int64_t{1} << 20);
  data.Bool("packing", &r->data.packing);
  data.Bool("shuffle", &r->data.shuffle);
  data.Seed("seed", &r->data.seed);
  data.Finish();
  if (!data.Has("train")) errors->Add(nullptr, "data.train", "missing (a JSONL file)");
  if (r->loss == LossKind::kDpo && r->data.packing) {
    errors->Add(data.KeyNode("packing"), "data.packing", "not supported with loss dpo");
  }
  return data.Has("seed");
}

void ReadAdaptation(Section& top, Errors* errors, Recipe* r) {
  Section lora = top.Child("lora");
  lora.Int("rank", &r->lora.rank, 1, 65536);
  lora.Number("alpha", &r->lora.alpha, kPositive);
  lora.Number("dropout", &r->lora.dropout, kUnitOpen);
  lora.Bool("rslora", &r->lora.rslora);
  lora.EnumList<LoraModule>("targets", Choices<LoraModule>(std::size(kAllLoraModules), LoraModuleName), &r->lora.targets);
  lora.Finish();
  Section dpo = top.Child("dpo");
  dpo.Number("beta", &r->dpo.beta, kPositive);
  dpo.Finish();
  if (r->method == TrainMethod::kFull && top.Has("lora")) {
    errors->Add(top.KeyNode("lora"), "lora", "only for method lora or qlora (method is full)");
  }
  if (r->loss != LossKind::kDpo && top.Has("dpo")) {
    errors->Add(top.KeyNode("dpo"), "dpo", "only for loss dpo");
  }
}

void ReadOptimization(Section& top, Errors* errors, Recipe* r) {
  Section optim = top.Child("optim");
  optim.Number("lr", &r->optim.lr, kPositive);
  optim.Number("beta1", &r->optim.beta1, kUnitOpen);
  optim.Number("beta2", &r->optim.beta2, kUnitOpen);
  optim.Number("eps", &r->optim.eps, kPositive);
  optim.Number("weight_decay", &r->optim.weight_decay, kNonNegative);
  optim.Number("grad_clip", &r->optim.grad_clip, kNonNegative);
  optim.Finish();
  Section sched = top.Child("schedule");
  sched.Int("warmup_steps", &r->schedule.warmup_steps, 0);
  sched.Enum<LrDecay>("decay", Choices<LrDecay>(3, LrDecayName), &r->schedule.decay);
  sched.Number("min_lr_ratio", &r->schedule.min_lr_ratio, Range{0, 1, false, false});
  sched.Finish();
  Section train = top.Child("train");
  train.Int("steps", &r->train.steps, 1);
  train.Number("epochs", &r->train.epochs, Range{0, 1e6, true, false});
  train.Int("micro_batch", &r->train.micro_batch, 1, 1 << 20);
  train.Int("grad_accum", &r->train.grad_accum, 1, 1 << 20);
  train.Int("threads", &r->train.threads, 1, 1024);
  train.Seed("seed", &r->train.seed);
  train.Bool("gradient_checkpointing", &r->train.gradient_checkpointing);
  train.Finish();
  if (train.Has("steps") && train.Has("epochs")) {
    errors->Add(train.KeyNode("epochs"), "train.epochs",
                "give train.steps or train.epochs, not both");
  }
  if (train.Has("steps") && r->schedule.warmup_steps > r->train.steps) {
    errors->Add(sched.KeyNode("warmup_steps"), "schedule.warmup_steps",
                absl::StrCat("must be <= train.steps (", r->train.steps, ")"));
  }
}

void ReadOutputs(Section& top, Errors* errors, Recipe* r) {
  Section ckpt = top.Child("checkpoint");
  ckpt.String("dir", &r->checkpoint.dir);
  ckpt.Int("every", &r->checkpoint.every, 0);
  ckpt.Int("keep", &r->checkpoint.keep, 0);
  ckpt.Finish();
  Section output = top.Child("output");
  output.String("dir", &r->output.dir);
  const bool full = r->method == TrainMethod::kFull;
  if (!full) r->output.adapter = {AdapterFormat::kPeft, AdapterFormat::kGguf};
  if (full) r->output.merged = MergedType::kF32;
  output.EnumList<AdapterFormat>("adapter", Choices<AdapterFormat>(2, AdapterFormatName),
                                 &r->output.adapter);
  output.Enum<MergedType>("merged", Choices<MergedType>(3, MergedTypeName), &r->output.merged);
  output.Finish();
  Section log = top.Child("log");
  log.String("metrics", &r->log.metrics);
  log.Int("every", &r->log.every, 1);
  log.Finish();
  if (!output.Has("dir")) errors->Add(nullptr, "output.dir", "missing (where results go)");
  if (full && output.Has("adapter")) {
    errors->Add(output.KeyNode("adapter"), "output.adapter",
                "only for method lora or qlora; method full writes the whole model");
  }
  if (full && r->output.merged == MergedType::kNone) {
    errors->Add(output.KeyNode("merged"), "output.merged",
                "method full writes the whole model: choose f32 or f16");
  }
  if (!full && r->output.adapter.empty() && r->output.merged == MergedType::kNone) {
    errors->Add(output.KeyNode("adapter"), "output.adapter",
                "empty and output.merged is none: the run would write nothing");
  }
}

void ResolvePaths(const std::string& base_dir, Recipe* r) {
  for (std::string* p : {&r->model, &r->data.train, &r->data.eval, &r->checkpoint.dir,
                         &r->output.dir, &r->log.metrics}) {
    *p = ResolvePath(*p, base_dir);
  }
  if (r->checkpoint.dir.empty() && !r->output.dir.empty()) {
    r->checkpoint.dir = (std::filesystem::path(r->output.dir) / "checkpoints").string();
  }
  if (r->log.metrics.empty() && !r->output.dir.empty()) {
    r->log.metrics = (std::filesystem::path(r->output.dir) / "metrics.jsonl").string();
  }
}

void ReadRecipe(const YAML::Node& root, Errors* errors, Recipe* r, const std::string& base_dir) {
  Section top(root, "", errors);
  top.String("model", &r->model);
  top.Enum<TrainMethod>("method", Choices<TrainMethod>(3, TrainMethodName), &r->method);
  top.Enum<LossKind>("loss", Choices<LossKind>(3, LossKindName), &r->loss);
  if (!top.Has("model")) errors->Add(nullptr, "model", "missing (the GGUF file to start from)");
  if (!top.Has("method")) errors->Add(nullptr, "method", "missing (full, lora or qlora)");
  const bool data_seed = ReadData(top, errors, r);
  ReadAdaptation(top, errors, r);
  ReadOptimization(top, errors, r);
  if (!data_seed) r->data.seed = r->train.seed;
  ReadOutputs(top, errors, r);
  top.Finish();
  ResolvePaths(base_dir, r);
}

}  // namespace

// Names in enum order (the enums in recipe.h are dense and start at 0).
const char* LossKindName(LossKind l) {
  return std::array{"sft", "lm", "dpo"}[static_cast<size_t>(l)];
}
const char* LrDecayName(LrDecay d) {
  return std::array{"linear", "cosine", "constant"}[static_cast<size_t>(d)];
}
const char* AdapterFormatName(AdapterFormat f) {
  return std::array{"peft", "gguf"}[static_cast<size_t>(f)];
}
const char* MergedTypeName(MergedType t) {
  return std::array{"none", "f32", "f16"}[static_cast<size_t>(t)];
}

LoraConfig DefaultRecipeLora() {
  LoraConfig c;
  c.rank = 8;
  c.alpha = 16.0f;
  c.dropout = 0.0f;
  c.rslora = false;
  c.targets.assign(std::begin(kAllLoraModules), std::end(kAllLoraModules));
  return c;
}

absl::StatusOr<Recipe> ParseRecipe(std::string_view yaml, std::string_view name_view,
                                   std::string_view base_dir) {
  const std::string name(name_view);
  Errors errors{name};
  Recipe r;
  r.source = name;
  if (yaml.size() > kMaxRecipeBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": ", yaml.size(), " bytes; a recipe is at most ", kMaxRecipeBytes));
  }
  try {
    const std::vector<YAML::Node> docs = YAML::LoadAll(std::string(yaml));
    if (docs.empty() || docs[0].IsNull()) {
      return absl::InvalidArgumentError(absl::StrCat(name, ": the recipe is empty"));
    }
    if (docs.size() > 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": ", docs.size(), " YAML documents; a recipe is one"));
    }
    if (!docs[0].IsMap()) {
      errors.Add(&docs[0], "", absl::StrCat("expected a mapping of fields, got ", Describe(docs[0])));
    } else {
      ReadRecipe(docs[0], &errors, &r, std::string(base_dir));
    }
  } catch (const YAML::Exception& e) {
    if (e.mark.is_null()) return absl::InvalidArgumentError(absl::StrCat(name, ": ", e.msg));
    return absl::InvalidArgumentError(absl::StrCat(name, ":", e.mark.line + 1, ":",
                                                   e.mark.column + 1, ": YAML error: ", e.msg));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": ", e.what()));
  }
  if (absl::Status s = errors.ToStatus(); !s.ok()) return s;
  return r;
}

absl::StatusOr<Recipe> LoadRecipe(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return absl::NotFoundError(absl::StrCat(path, ": no such recipe file"));
  }
  if (std::filesystem::is_directory(path, ec)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": is a directory, not a recipe"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot be opened"));
  std::string text(kMaxRecipeBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  const std::string base = std::filesystem::absolute(path, ec).parent_path().string();
  return ParseRecipe(text, path, base);
}

int64_t TotalSteps(const Recipe& recipe, int64_t num_train_examples, int64_t world_size) {
  if (recipe.train.steps > 0) return recipe.train.steps;
  const double per_step = static_cast<double>(recipe.train.micro_batch) *
                          static_cast<double>(recipe.train.grad_accum) *
                          static_cast<double>(std::max<int64_t>(world_size, 1));
  const double steps =
      std::ceil(recipe.train.epochs * static_cast<double>(num_train_examples) / per_step);
  return std::max<int64_t>(1, static_cast<int64_t>(steps));
}

}  // namespace anvil::train
