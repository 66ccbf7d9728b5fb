// The worker agent against a fake coordinator (the Workers and Rendezvous services over
// loopback gRPC, in this process): two agents register, take the two ranks of a LoRA task,
// rendezvous through the fake's store, and report rank 0's steps and both ends; a heartbeat
// that says stop stops both ranks; a wrong token is refused at registration; a coordinator that
// restarts (and forgets the worker) gets it registered again.
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "anvil/v1/rendezvous.grpc.pb.h"
#include "anvil/v1/workers.grpc.pb.h"
#include "gtest/gtest.h"
#include "model/tiny_model.h"
#include "rpc/auth.h"
#include "rpc/job_spec.h"
#include "tests/testing/status_matchers.h"
#include "worker/agent.h"

namespace anvil::worker {
namespace {

namespace fs = std::filesystem;
using ::anvil::testing::StatusIs;
using std::chrono::milliseconds;

constexpr char kToken[] = "test-token";

// What the fake coordinator saw and what it hands out; one mutex for all of it.
struct FakeState {
  std::mutex mu;
  std::condition_variable cv;
  std::map<std::string, int> registrations;           // by name
  std::map<std::string, std::vector<v1::Task>> queue;  // by worker id
  std::vector<v1::ReportProgressRequest> progress;
  std::vector<v1::CompleteTaskRequest> completed;
  std::map<std::string, std::string> kv;               // namespace/key -> value
  bool stop = false;                                   // every heartbeat says stop_task

  template <typename Pred>
  bool WaitFor(Pred pred, int seconds = 120) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(seconds), pred);
  }
};

class FakeWorkers final : public v1::Workers::Service {
 public:
  explicit FakeWorkers(FakeState* s) : s_(s), auth_(kToken) {}
  grpc::Status Register(grpc::ServerContext* c, const v1::RegisterRequest* q, v1::RegisterResponse* r) override {
    if (absl::Status a = auth_.Check(*c); !a.ok()) return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "no");
    std::lock_guard<std::mutex> lock(s_->mu);
    ++s_->registrations[q->name()];
    known_.insert({"w-" + q->name(), true});
    r->set_worker_id("w-" + q->name());
    r->set_heartbeat_interval_ms(100);
    r->set_dead_after_ms(2000);
    s_->cv.notify_all();
    return grpc::Status::OK;
  }
  grpc::Status Heartbeat(grpc::ServerContext*, const v1::HeartbeatRequest* q, v1::HeartbeatResponse* r) override {
    std::lock_guard<std::mutex> lock(s_->mu);
    r->set_reregister(known_.count(q->worker_id()) == 0);
    r->set_stop_task(s_->stop && !q->task_id().empty());
    return grpc::Status::OK;
  }
  grpc::Status PollTask(grpc::ServerContext*, const v1::PollTaskRequest* q, v1::PollTaskResponse* r) override {
    std::unique_lock<std::mutex> lock(s_->mu);
    std::vector<v1::Task>& tasks = s_->queue[q->worker_id()];
    s_->cv.wait_for(lock, milliseconds(q->wait_ms()), [&] { return !tasks.empty(); });
    if (!tasks.empty()) {
      *r->mutable_task() = tasks.front();
      tasks.erase(tasks.begin());
    }
    return grpc::Status::OK;
  }
  grpc::Status ReportProgress(grpc::ServerContext*, const v1::ReportProgressRequest* q,
                              v1::ReportProgressResponse*) override {
    std::lock_guard<std::mutex> lock(s_->mu);
    s_->progress.push_back(*q);
    s_->cv.notify_all();
    return grpc::Status::OK;
  }
  grpc::Status CompleteTask(grpc::ServerContext*, const v1::CompleteTaskRequest* q,
                            v1::CompleteTaskResponse*) override {
    std::lock_guard<std::mutex> lock(s_->mu);
    s_->completed.push_back(*q);
    s_->cv.notify_all();
    return grpc::Status::OK;
  }

 private:
  FakeState* s_;
  rpc::TokenChecker auth_;
  std::map<std::string, bool> known_;  // forgotten when the fake "restarts" (a new instance)
};

class FakeRendezvous final : public v1::Rendezvous::Service {
 public:
  explicit FakeRendezvous(FakeState* s) : s_(s) {}
  grpc::Status Set(grpc::ServerContext*, const v1::SetRequest* q, v1::SetResponse*) override {
    std::lock_guard<std::mutex> lock(s_->mu);
    s_->kv[q->namespace_() + "/" + q->key()] = q->value();
    s_->cv.notify_all();
    return grpc::Status::OK;
  }
  grpc::Status Get(grpc::ServerContext*, const v1::GetRequest* q, v1::GetResponse* r) override {
    std::unique_lock<std::mutex> lock(s_->mu);
    const std::string k = q->namespace_() + "/" + q->key();
    if (!s_->cv.wait_for(lock, milliseconds(q->timeout_ms()), [&] { return s_->kv.count(k) > 0; })) {
      return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "no key " + k);
    }
    r->set_value(s_->kv[k]);
    return grpc::Status::OK;
  }
  grpc::Status Wait(grpc::ServerContext*, const v1::WaitRequest* q, v1::WaitResponse*) override {
    std::unique_lock<std::mutex> lock(s_->mu);
    auto all = [&] {
      for (const std::string& k : q->keys()) {
        if (s_->kv.count(q->namespace_() + "/" + k) == 0) return false;
      }
      return true;
    };
    if (!s_->cv.wait_for(lock, milliseconds(q->timeout_ms()), all)) {
      return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "keys missing");
    }
    return grpc::Status::OK;
  }

 private:
  FakeState* s_;
};

// One fake coordinator instance on `address` ("127.0.0.1:0" picks a port).
struct FakeCoordinator {
  FakeCoordinator(FakeState* s, const std::string& address) : workers(s), rendezvous(s) {
    grpc::ServerBuilder b;
    b.AddListeningPort(address, grpc::InsecureServerCredentials(), &port);
    b.RegisterService(&workers);
    b.RegisterService(&rendezvous);
    server = b.BuildAndStart();
  }
  ~FakeCoordinator() { server->Shutdown(std::chrono::system_clock::now() + milliseconds(200)); }
  std::string address() const { return absl::StrCat("127.0.0.1:", port); }
  FakeWorkers workers;
  FakeRendezvous rendezvous;
  int port = 0;
  std::unique_ptr<grpc::Server> server;
};

AgentConfig Config(const std::string& address, const std::string& name, std::string token = kToken) {
  AgentConfig c;
  c.coordinator = address;
  c.token = std::move(token);
  c.name = name;
  c.poll_wait = milliseconds(300);
  c.rpc_deadline = milliseconds(3000);
  c.max_backoff = milliseconds(300);
  c.collective_timeout = milliseconds(30000);
  c.progress = false;
  return c;
}

// Two ranks of a LoRA run on the tiny model; `steps` long.
std::vector<v1::Task> TwoRankTask(const std::string& name, int steps) {
  const std::string dir = ::testing::TempDir() + "/worker_agent_" + name + "_" + std::to_string(getpid());
  fs::remove_all(dir);
  fs::create_directories(dir);
  EXPECT_TRUE(WriteTinyLlamaGguf({}, dir + "/tiny.gguf").ok());
  std::string chat;
  for (int i = 0; i < 8; ++i) {
    chat += absl::StrCat(R"({"messages": [{"role": "user", "content": "Name )", i,
                         R"(?"}, {"role": "assistant", "content": "Ada )", i, R"("}]})", "\n");
  }
  std::ofstream(dir + "/chat.jsonl") << chat;
  auto spec = rpc::FinetuneSpecFromYaml(absl::StrCat(R"(model: tiny.gguf
method: lora
data: {train: chat.jsonl, max_length: 64}
train: {steps: )", steps, R"(, micro_batch: 1, grad_accum: 2}
checkpoint: {every: 0}
output: {dir: out, adapter: [gguf]}
)"), "r.yaml", dir);
  EXPECT_TRUE(spec.ok()) << spec.status();
  std::vector<v1::Task> tasks(2);
  for (int r = 0; r < 2; ++r) {
    tasks[r].set_task_id(absl::StrCat(name, "-", r));
    tasks[r].set_job_id(name);
    tasks[r].set_attempt(1);
    tasks[r].set_rank(r);
    tasks[r].set_world_size(2);
    tasks[r].set_rendezvous_namespace(name + "/1");
    if (spec.ok()) *tasks[r].mutable_spec()->mutable_finetune() = *spec;
  }
  return tasks;
}

// Two agents "a" and "b" running against `address` until the test body returns.
struct TwoAgents {
  explicit TwoAgents(const std::string& address)
      : a(Config(address, "a")), b(Config(address, "b")) {
    ta = std::thread([this] { sa = a.Run(); });
    tb = std::thread([this] { sb = b.Run(); });
  }
  ~TwoAgents() {
    a.Shutdown();
    b.Shutdown();
    ta.join();
    tb.join();
    EXPECT_TRUE(sa.ok()) << sa;
    EXPECT_TRUE(sb.ok()) << sb;
  }
  Agent a, b;
  absl::Status sa, sb;
  std::thread ta, tb;
};

void Assign(FakeState* s, const std::vector<v1::Task>& tasks) {
  std::lock_guard<std::mutex> lock(s->mu);
  s->queue["w-a"].push_back(tasks[0]);
  s->queue["w-b"].push_back(tasks[1]);
  s->cv.notify_all();
}

TEST(AgentTest, TwoAgentsRunTheTwoRanksOfATask) {
  FakeState state;
  FakeCoordinator coordinator(&state, "127.0.0.1:0");
  TwoAgents agents(coordinator.address());
  ASSERT_TRUE(state.WaitFor([&] { return state.registrations.size() == 2; }));
  Assign(&state, TwoRankTask("ok", 4));
  ASSERT_TRUE(state.WaitFor([&] { return state.completed.size() == 2; }));
  std::lock_guard<std::mutex> lock(state.mu);
  for (const v1::CompleteTaskRequest& c : state.completed) {
    EXPECT_TRUE(c.ok()) << c.task_id() << ": " << c.error();
    EXPECT_EQ(c.outputs_size() > 0, c.task_id() == "ok-0") << c.task_id();
  }
  ASSERT_EQ(state.progress.size(), 4u);  // rank 0 only, one per step
  for (size_t i = 0; i < state.progress.size(); ++i) {
    EXPECT_EQ(state.progress[i].task_id(), "ok-0");
    EXPECT_EQ(state.progress[i].progress().step(), static_cast<int64_t>(i) + 1);
    EXPECT_GT(state.progress[i].progress().loss(), 0.0);
  }
}

TEST(AgentTest, AHeartbeatThatSaysStopStopsBothRanks) {
  FakeState state;
  FakeCoordinator coordinator(&state, "127.0.0.1:0");
  TwoAgents agents(coordinator.address());
  ASSERT_TRUE(state.WaitFor([&] { return state.registrations.size() == 2; }));
  Assign(&state, TwoRankTask("stop", 100000));
  ASSERT_TRUE(state.WaitFor([&] { return state.progress.size() >= 2; }));
  {
    std::lock_guard<std::mutex> lock(state.mu);
    state.stop = true;
  }
  ASSERT_TRUE(state.WaitFor([&] { return state.completed.size() == 2; }, 60));
  std::lock_guard<std::mutex> lock(state.mu);
  for (const v1::CompleteTaskRequest& c : state.completed) {
    EXPECT_FALSE(c.ok());
    EXPECT_NE(c.error().find("CANCELLED"), std::string::npos) << c.error();
  }
}

TEST(AgentTest, AWrongTokenIsRefusedAtRegistration) {
  FakeState state;
  FakeCoordinator coordinator(&state, "127.0.0.1:0");
  Agent agent(Config(coordinator.address(), "bad", "wrong"));
  EXPECT_THAT(agent.Run(), StatusIs(absl::StatusCode::kUnauthenticated));
}

TEST(AgentTest, ACoordinatorThatRestartsGetsTheWorkerBack) {
  FakeState state;
  auto coordinator = std::make_unique<FakeCoordinator>(&state, "127.0.0.1:0");
  const std::string address = coordinator->address();
  AgentConfig c = Config(address, "a");
  Agent agent(c);
  absl::Status run;
  std::thread t([&] { run = agent.Run(); });
  ASSERT_TRUE(state.WaitFor([&] { return state.registrations["a"] == 1; }));
  coordinator.reset();  // gone: heartbeats and polls fail and are retried
  std::this_thread::sleep_for(milliseconds(500));
  coordinator = std::make_unique<FakeCoordinator>(&state, address);
  // The new instance does not know the worker: the heartbeat answer makes it register again.
  EXPECT_TRUE(state.WaitFor([&] { return state.registrations["a"] >= 2; }, 30));
  agent.Shutdown();
  t.join();
  EXPECT_TRUE(run.ok()) << run;
}

}  // namespace
}  // namespace anvil::worker
