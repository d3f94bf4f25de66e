// launch-batch: the Supabase Edge Function that turns a launched batch into a Prefect flow run.
//
// Called by the Postgres trigger (migration 0002, via pg_net) with
//   POST {"batch_id": 123, "idempotency_key": "batch-123-launch-20261122093015123456"}
//   Authorization: Bearer <LAUNCH_SHARED_SECRET>
// it calls POST ${PREFECT_API_URL}/deployments/${PREFECT_DEPLOYMENT_ID}/create_flow_run.
// The idempotency key makes Prefect return the existing run when the same launch arrives twice
// (pg_net retries, a manual re-send, the local bridge), so one launch is one flow run. The key is
// `batch-<id>-launch-<launch time>` (coalesce(launched_at, created_at) in UTC, to the
// microsecond), built by the trigger: only the database knows the launch time, so the body must
// carry the key (400 without it). A key of the batch id alone would hand back an earlier launch's
// run after a database reset or when a cancelled batch is launched again. A `batch-` key must
// name the body's batch_id (400 otherwise): another batch's key would dedupe against its run.
//
// Environment (Supabase: `supabase secrets set NAME=value`):
//   LAUNCH_SHARED_SECRET   required; the trigger's bearer token
//   PREFECT_API_URL        required; e.g. https://api.prefect.cloud/api/accounts/<a>/workspaces/<w>
//   PREFECT_DEPLOYMENT_ID  required; printed by `outbound deploy`
//   PREFECT_API_KEY        optional; sent as a bearer token to Prefect when set (Prefect Cloud)
//
// No remote imports: only web APIs and Deno built-ins, so the same file runs under the Supabase
// Edge Runtime, under plain `deno run`, and in `deno test` without network access.

const REQUIRED_ENV = ["LAUNCH_SHARED_SECRET", "PREFECT_API_URL", "PREFECT_DEPLOYMENT_ID"] as const;
const FLOW_RUN_TAGS = ["trigger:edge-function"];
// All tries together stay inside pg_net's 15 s wait (migration 0004), so the database records
// Prefect's real answer rather than its own timeout.
const PREFECT_BUDGET_MS = 12_000;
// A busy Prefect (429, 502-504) or a dropped connection is tried again after these pauses: the
// idempotency key makes a repeat return the run the first try created, never a second one.
const RETRY_PAUSES_MS = [500, 1_000, 2_000];
const RETRYABLE_STATUSES = new Set([429, 502, 503, 504]);
const EXCERPT_CHARS = 500;
// The trigger's keys: batch-<id>-launch-<launch time, UTC, YYYYMMDDHHMMSS + microseconds>.
const TRIGGER_KEY = /^batch-(\d+)-launch-(\d+)$/;

type Env = (name: string) => string | undefined;

export interface LaunchRequest {
  batch_id: number;
  idempotency_key: string;
}

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "Content-Type": "application/json" },
  });
}

/** Compare without an early exit, so response timing does not reveal how much of a guess matched. */
export function constantTimeEqual(a: string, b: string): boolean {
  const enc = new TextEncoder();
  const x = enc.encode(a);
  const y = enc.encode(b);
  // A length mismatch already fails; the loop still walks the longer input in full.
  let diff = x.length ^ y.length;
  const n = Math.max(x.length, y.length);
  for (let i = 0; i < n; i++) {
    diff |= (x[i] ?? 0) ^ (y[i] ?? 0);
  }
  return diff === 0;
}

function bearer(req: Request): string | null {
  const header = req.headers.get("Authorization") ?? "";
  const match = /^Bearer\s+(.+)$/i.exec(header.trim());
  return match ? match[1] : null;
}

/** The body as a LaunchRequest, or an error message naming the field at fault. */
export function parseLaunch(body: unknown): LaunchRequest | string {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    return "body must be a JSON object";
  }
  const record = body as Record<string, unknown>;
  const batchId = record.batch_id;
  if (typeof batchId !== "number" || !Number.isSafeInteger(batchId) || batchId <= 0) {
    return "batch_id must be a positive integer";
  }
  const key = record.idempotency_key;
  if (key === undefined || key === null) {
    return "idempotency_key is required (batch-<id>-launch-<launch time>, as the trigger sends it)";
  }
  if (typeof key !== "string" || key.length === 0 || key.length > 255) {
    return "idempotency_key must be a non-empty string of at most 255 characters";
  }
  // A key in the trigger's namespace must name this batch: with another batch's key Prefect would
  // hand back (or later hand out) that batch's run, and one of the two batches would never run.
  if (key.startsWith("batch-")) {
    const match = TRIGGER_KEY.exec(key);
    if (match === null) {
      return "idempotency_key starting with batch- must be batch-<batch_id>-launch-<launch time digits>";
    }
    if (match[1] !== String(batchId)) {
      return `idempotency_key names batch ${match[1]} but batch_id is ${batchId}`;
    }
  }
  return { batch_id: batchId, idempotency_key: key };
}

/** Handle one request. `env` is injectable for tests; it defaults to the process environment. */
export async function handler(req: Request, env: Env = (n) => Deno.env.get(n)): Promise<Response> {
  if (req.method !== "POST") {
    return new Response(JSON.stringify({ error: "method not allowed: use POST" }), {
      status: 405,
      headers: { "Content-Type": "application/json", "Allow": "POST" },
    });
  }

  for (const name of REQUIRED_ENV) {
    if (!env(name)) {
      console.error(`launch-batch: environment variable ${name} is not set`);
      return json(500, { error: `server misconfigured: environment variable ${name} is not set` });
    }
  }

  const token = bearer(req);
  if (token === null || !constantTimeEqual(token, env("LAUNCH_SHARED_SECRET")!)) {
    return json(401, { error: "unauthorized: expected Authorization: Bearer <LAUNCH_SHARED_SECRET>" });
  }

  let body: unknown;
  try {
    body = await req.json();
  } catch {
    return json(400, { error: "body must be valid JSON" });
  }
  const launch = parseLaunch(body);
  if (typeof launch === "string") {
    return json(400, { error: launch });
  }

  const apiUrl = env("PREFECT_API_URL")!.replace(/\/+$/, "");
  const deploymentId = encodeURIComponent(env("PREFECT_DEPLOYMENT_ID")!);
  const url = `${apiUrl}/deployments/${deploymentId}/create_flow_run`;
  const headers: Record<string, string> = { "Content-Type": "application/json" };
  const apiKey = env("PREFECT_API_KEY");
  if (apiKey) headers["Authorization"] = `Bearer ${apiKey}`;

  const request = JSON.stringify({
    parameters: { batch_id: launch.batch_id },
    idempotency_key: launch.idempotency_key,
    tags: [...FLOW_RUN_TAGS, `batch:${launch.batch_id}`],
  });
  const deadline = Date.now() + PREFECT_BUDGET_MS;
  let prefect: Response | null = null;
  let unreachable = "";
  for (let attempt = 0; ; attempt++) {
    try {
      prefect = await fetch(url, {
        method: "POST",
        headers,
        body: request,
        signal: AbortSignal.timeout(Math.max(1, deadline - Date.now())),
      });
      unreachable = "";
    } catch (err) {
      prefect = null;
      unreachable = err instanceof Error ? err.message : String(err);
    }
    const pause = RETRY_PAUSES_MS[attempt];
    const retryable = prefect === null || RETRYABLE_STATUSES.has(prefect.status);
    if (!retryable || pause === undefined || Date.now() + pause >= deadline) break;
    console.warn(`launch-batch: batch ${launch.batch_id}: Prefect ${prefect === null ? "unreachable" : `answered ${prefect.status}`}, retry ${attempt + 1} in ${pause} ms`);
    await prefect?.body?.cancel();
    await new Promise((resolve) => setTimeout(resolve, pause));
  }
  if (prefect === null) {
    console.error(`launch-batch: Prefect API unreachable: ${unreachable}`);
    return json(502, { error: "Prefect API unreachable", detail: unreachable.slice(0, EXCERPT_CHARS) });
  }

  const text = await prefect.text();
  if (!prefect.ok) {
    console.error(`launch-batch: Prefect answered ${prefect.status} for batch ${launch.batch_id}`);
    return json(502, {
      error: "Prefect API refused to create the flow run",
      prefect_status: prefect.status,
      prefect_body: text.slice(0, EXCERPT_CHARS),
    });
  }

  let run: { id?: string; state?: { type?: string; name?: string } | null };
  try {
    run = JSON.parse(text);
  } catch {
    return json(502, { error: "Prefect API answered with non-JSON", prefect_body: text.slice(0, EXCERPT_CHARS) });
  }
  // Prefect answers 201 for a new run and 200 when the idempotency key matched an existing one.
  return json(prefect.status === 201 ? 201 : 200, {
    flow_run_id: run.id,
    state: run.state?.type ?? null,
    batch_id: launch.batch_id,
    idempotency_key: launch.idempotency_key,
    created: prefect.status === 201,
  });
}

// Serve when run directly (`deno run index.ts`) or inside the Supabase Edge Runtime (which
// defines the EdgeRuntime global); stay quiet when imported by the tests. PORT (and BIND_ADDRESS,
// default 127.0.0.1) choose where plain Deno listens; the Edge Runtime picks its own.
if (import.meta.main || "EdgeRuntime" in globalThis) {
  const port = Deno.env.get("PORT");
  if (port) {
    Deno.serve({ port: Number(port), hostname: Deno.env.get("BIND_ADDRESS") ?? "127.0.0.1" }, (req) => handler(req));
  } else {
    Deno.serve((req) => handler(req));
  }
}
