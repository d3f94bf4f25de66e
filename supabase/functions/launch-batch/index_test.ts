// Tests for launch-batch against a fake Prefect API: a real HTTP server started inside the test.
// Run: deno test --allow-net --allow-env supabase/functions/launch-batch/index_test.ts
// (The Python e2e suite runs the same function under `deno run` against a real Prefect server.)

import { constantTimeEqual, handler, parseLaunch } from "./index.ts";

const SECRET = "test-shared-secret";
const DEPLOYMENT = "0c6f2a52-8d3e-4b7a-9a43-0e2f1f6d2b11";
// The shape the trigger sends: batch-<id>-launch-<coalesce(launched_at, created_at), UTC, to the µs>.
const KEY_42 = "batch-42-launch-20261122093015123456";

function assert(condition: unknown, message = "assertion failed"): asserts condition {
  if (!condition) throw new Error(message);
}

function assertEquals(actual: unknown, expected: unknown, message = ""): void {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new Error(`${message}\n  actual:   ${a}\n  expected: ${e}`);
}

interface Seen {
  method: string;
  path: string;
  authorization: string | null;
  body: Record<string, unknown>;
}

type Responder = (seen: Seen) => Response;

/** A fake Prefect API on a free port; every test shuts it down, so no resources leak. */
async function withFakePrefect(
  respond: Responder,
  fn: (apiUrl: string, seen: Seen[]) => Promise<void>,
): Promise<void> {
  const seen: Seen[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const entry: Seen = {
      method: req.method,
      path: new URL(req.url).pathname,
      authorization: req.headers.get("Authorization"),
      body: await req.json(),
    };
    seen.push(entry);
    return respond(entry);
  });
  try {
    await fn(`http://127.0.0.1:${server.addr.port}/api`, seen);
  } finally {
    await server.shutdown();
  }
}

function envOf(values: Record<string, string | undefined>) {
  return (name: string) => values[name];
}

function fullEnv(apiUrl: string, extra: Record<string, string> = {}) {
  return envOf({
    LAUNCH_SHARED_SECRET: SECRET,
    PREFECT_API_URL: apiUrl,
    PREFECT_DEPLOYMENT_ID: DEPLOYMENT,
    ...extra,
  });
}

function launchRequest(body: unknown, token: string | null = SECRET, method = "POST"): Request {
  const headers: Record<string, string> = { "Content-Type": "application/json" };
  if (token !== null) headers["Authorization"] = `Bearer ${token}`;
  return new Request("http://edge.local/launch-batch", {
    method,
    headers,
    body: method === "GET" ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
}

function flowRun(status = 201): Response {
  return new Response(JSON.stringify({ id: "f1e2d3c4-0000-4000-8000-000000000001", state: { type: "SCHEDULED" } }), {
    status,
    headers: { "Content-Type": "application/json" },
  });
}

Deno.test("creates a flow run with the batch id, idempotency key and tags", async () => {
  await withFakePrefect(() => flowRun(201), async (apiUrl, seen) => {
    const res = await handler(
      launchRequest({ batch_id: 42, idempotency_key: KEY_42 }),
      fullEnv(apiUrl, { PREFECT_API_KEY: "pnu_key" }),
    );
    assertEquals(res.status, 201);
    assertEquals(await res.json(), {
      flow_run_id: "f1e2d3c4-0000-4000-8000-000000000001",
      state: "SCHEDULED",
      batch_id: 42,
      idempotency_key: KEY_42,
      created: true,
    });
    assertEquals(seen.length, 1);
    assertEquals(seen[0].method, "POST");
    assertEquals(seen[0].path, `/api/deployments/${DEPLOYMENT}/create_flow_run`);
    assertEquals(seen[0].authorization, "Bearer pnu_key");
    assertEquals(seen[0].body, {
      parameters: { batch_id: 42 },
      idempotency_key: KEY_42,
      tags: ["trigger:edge-function", "batch:42"],
    });
  });
});

Deno.test("passes a caller's idempotency key through; no API key means no Authorization to Prefect", async () => {
  await withFakePrefect(() => flowRun(200), async (apiUrl, seen) => {
    const res = await handler(launchRequest({ batch_id: 7, idempotency_key: "custom-key" }), fullEnv(apiUrl + "/"));
    // Prefect's 200 means the key matched an existing run: pass that on.
    assertEquals(res.status, 200);
    const body = await res.json();
    assertEquals(body.created, false);
    assertEquals(seen[0].body.idempotency_key, "custom-key");
    assertEquals(seen[0].authorization, null);
    assertEquals(seen[0].path, `/api/deployments/${DEPLOYMENT}/create_flow_run`);
  });
});

Deno.test("the same launch sent twice carries the same key; another launch of the batch another key", async () => {
  const runs = new Map<string, string>();
  const prefect = (seen: Seen) => {
    const key = seen.body.idempotency_key as string;
    const created = !runs.has(key);
    if (created) runs.set(key, `f1e2d3c4-0000-4000-8000-00000000000${runs.size + 1}`);
    return new Response(JSON.stringify({ id: runs.get(key), state: { type: "SCHEDULED" } }), {
      status: created ? 201 : 200,
      headers: { "Content-Type": "application/json" },
    });
  };
  await withFakePrefect(prefect, async (apiUrl, seen) => {
    const relaunch = "batch-42-launch-20261122101500000042";
    const answers = [];
    for (const key of [KEY_42, KEY_42, relaunch]) {
      const res = await handler(launchRequest({ batch_id: 42, idempotency_key: key }), fullEnv(apiUrl));
      answers.push([res.status, (await res.json()).flow_run_id]);
    }
    assertEquals(seen.map((s) => s.body.idempotency_key), [KEY_42, KEY_42, relaunch]);
    assertEquals(answers[0][0], 201);
    assertEquals(answers[1], [200, answers[0][1]]); // a retry: the run the first call made
    assertEquals(answers[2][0], 201); // a new launch: a new run
    assert(answers[2][1] !== answers[0][1], "a relaunch must not get the earlier run");
  });
});

Deno.test("rejects a missing or wrong shared secret with 401 before calling Prefect", async () => {
  await withFakePrefect(() => flowRun(), async (apiUrl, seen) => {
    for (const token of [null, "wrong", SECRET + "x", ""]) {
      const res = await handler(launchRequest({ batch_id: 1, idempotency_key: "k" }, token), fullEnv(apiUrl));
      assertEquals(res.status, 401, `token ${token}`);
      await res.body?.cancel();
    }
    assertEquals(seen.length, 0);
  });
});

Deno.test("validates the body and names the field", async () => {
  await withFakePrefect(() => flowRun(), async (apiUrl, seen) => {
    const cases: [unknown, string][] = [
      ["not json", "valid JSON"],
      [[1, 2], "JSON object"],
      [{}, "batch_id"],
      [{ batch_id: "12" }, "batch_id"],
      [{ batch_id: 0 }, "batch_id"],
      [{ batch_id: -3 }, "batch_id"],
      [{ batch_id: 1.5 }, "batch_id"],
      // Only the database knows the launch time the key is made of: no default key.
      [{ batch_id: 1 }, "idempotency_key"],
      [{ batch_id: 1, idempotency_key: null }, "idempotency_key"],
      [{ batch_id: 1, idempotency_key: 5 }, "idempotency_key"],
      [{ batch_id: 1, idempotency_key: "" }, "idempotency_key"],
      [{ batch_id: 1, idempotency_key: "k".repeat(256) }, "idempotency_key"],
      // The key of another batch's launch: Prefect would answer with (or later hand out) that run.
      [{ batch_id: 7, idempotency_key: KEY_42 }, "idempotency_key names batch 42 but batch_id is 7"],
      [{ batch_id: 4, idempotency_key: KEY_42 }, "batch_id is 4"],
      [{ batch_id: 42, idempotency_key: "batch-42-launch-" }, "idempotency_key"],
      [{ batch_id: 42, idempotency_key: "batch-042x-launch-1" }, "idempotency_key"],
      [{ batch_id: 42, idempotency_key: "batch-41-launch-20261122093015123456" }, "names batch 41"],
    ];
    for (const [body, field] of cases) {
      const res = await handler(launchRequest(body), fullEnv(apiUrl));
      assertEquals(res.status, 400, JSON.stringify(body));
      const error = (await res.json()).error as string;
      assert(error.includes(field), `${JSON.stringify(body)}: ${error}`);
    }
    assertEquals(seen.length, 0);
  });
});

Deno.test("only POST is allowed", async () => {
  const res = await handler(launchRequest(null, SECRET, "GET"), fullEnv("http://127.0.0.1:9/api"));
  assertEquals(res.status, 405);
  assertEquals(res.headers.get("Allow"), "POST");
  await res.body?.cancel();
});

Deno.test("a missing environment variable is a 500 that names it", async () => {
  for (const name of ["LAUNCH_SHARED_SECRET", "PREFECT_API_URL", "PREFECT_DEPLOYMENT_ID"]) {
    const values: Record<string, string | undefined> = {
      LAUNCH_SHARED_SECRET: SECRET,
      PREFECT_API_URL: "http://127.0.0.1:9/api",
      PREFECT_DEPLOYMENT_ID: DEPLOYMENT,
    };
    values[name] = undefined;
    const res = await handler(launchRequest({ batch_id: 1, idempotency_key: "k" }), envOf(values));
    assertEquals(res.status, 500, name);
    const error = (await res.json()).error as string;
    assert(error.includes(name), error);
  }
});

Deno.test("a Prefect error is passed on as 502 with its status and body", async () => {
  const refusal = () =>
    new Response(JSON.stringify({ detail: "Deployment not found" }), {
      status: 404,
      headers: { "Content-Type": "application/json" },
    });
  await withFakePrefect(refusal, async (apiUrl) => {
    const res = await handler(launchRequest({ batch_id: 3, idempotency_key: "k" }), fullEnv(apiUrl));
    assertEquals(res.status, 502);
    const body = await res.json();
    assertEquals(body.prefect_status, 404);
    assert((body.prefect_body as string).includes("Deployment not found"), body.prefect_body);
  });
});

Deno.test("a busy Prefect (503, 429) is tried again with the same key; one run results", async () => {
  let calls = 0;
  const busyTwice = () => {
    calls++;
    if (calls === 1) return new Response('{"exception_message":"Service Unavailable"}', { status: 503 });
    if (calls === 2) return new Response('{"detail":"slow down"}', { status: 429 });
    return flowRun(201);
  };
  await withFakePrefect(busyTwice, async (apiUrl, seen) => {
    const res = await handler(launchRequest({ batch_id: 3, idempotency_key: "batch-3-launch-1" }), fullEnv(apiUrl));
    assertEquals(res.status, 201);
    assertEquals(seen.length, 3);
    assertEquals(new Set(seen.map((s) => JSON.stringify(s.body))).size, 1); // the same body, the same key
  });
});

Deno.test("a Prefect that stays busy is a 502 naming its last status", async () => {
  await withFakePrefect(() => new Response("busy", { status: 503 }), async (apiUrl, seen) => {
    const res = await handler(launchRequest({ batch_id: 3, idempotency_key: "k" }), fullEnv(apiUrl));
    assertEquals(res.status, 502);
    assertEquals((await res.json()).prefect_status, 503);
    assertEquals(seen.length, 4); // the first try and three retries
  });
});

Deno.test("an unreachable Prefect API is a 502", async () => {
  // Bind a port, then free it: nothing listens there during the request.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const res = await handler(
    launchRequest({ batch_id: 3, idempotency_key: "k" }),
    fullEnv(`http://127.0.0.1:${port}/api`),
  );
  assertEquals(res.status, 502);
  assertEquals((await res.json()).error, "Prefect API unreachable");
});

Deno.test("served over HTTP the same way (Deno.serve around the exported handler)", async () => {
  await withFakePrefect(() => flowRun(201), async (apiUrl, seen) => {
    const edge = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: () => {} },
      (req) => handler(req, fullEnv(apiUrl)),
    );
    try {
      const res = await fetch(`http://127.0.0.1:${edge.addr.port}/launch-batch`, {
        method: "POST",
        headers: { "Authorization": `Bearer ${SECRET}`, "Content-Type": "application/json" },
        body: JSON.stringify({ batch_id: 9, idempotency_key: "batch-9-launch-20261122093015000001" }),
      });
      assertEquals(res.status, 201);
      assertEquals((await res.json()).idempotency_key, "batch-9-launch-20261122093015000001");
      assertEquals(seen[0].body.parameters, { batch_id: 9 });
    } finally {
      await edge.shutdown();
    }
  });
});

Deno.test("parseLaunch and constantTimeEqual", () => {
  const key = "batch-5-launch-20261122093015123456";
  assertEquals(parseLaunch({ batch_id: 5, idempotency_key: key }), { batch_id: 5, idempotency_key: key });
  for (const missing of [{ batch_id: 5 }, { batch_id: 5, idempotency_key: null }]) {
    const error = parseLaunch(missing);
    assert(typeof error === "string" && error.startsWith("idempotency_key is required"), String(error));
  }
  assertEquals(parseLaunch({ batch_id: Number.MAX_SAFE_INTEGER + 1 }), "batch_id must be a positive integer");
  assertEquals(parseLaunch({ batch_id: 6, idempotency_key: key }), "idempotency_key names batch 5 but batch_id is 6");
  // Keys outside the trigger's batch- namespace (manual checks) are passed through as given.
  assertEquals(parseLaunch({ batch_id: 6, idempotency_key: "manual-check-1" }),
    { batch_id: 6, idempotency_key: "manual-check-1" });
  assert(constantTimeEqual("abc", "abc"));
  assert(!constantTimeEqual("abc", "abd"));
  assert(!constantTimeEqual("abc", "abcd"));
  assert(!constantTimeEqual("", "a"));
  assert(constantTimeEqual("", ""));
});
