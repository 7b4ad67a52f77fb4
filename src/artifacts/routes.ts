import { z } from "zod";
import { AppError } from "../errors";
import { defineRoute } from "../http/route";
import { timestamp, uuid } from "../http/schemas";
import { jobNotFound } from "../jobs/service";
import * as jobs from "../jobs/store";
import * as store from "./store";

const kind = z.enum(["screenshot", "trace"]);

const artifactOutput = z.object({
  artifact_id: z.uuid(),
  job_id: z.uuid(),
  kind,
  content_type: z.string(),
  size_bytes: z.number().int(),
  created_at: timestamp,
});

const summary = (row: store.ArtifactSummary): z.input<typeof artifactOutput> => ({
  artifact_id: row.id,
  job_id: row.job_id,
  kind: row.kind as "screenshot",
  content_type: row.content_type,
  size_bytes: row.size_bytes,
  created_at: row.created_at,
});

export const DOWNLOAD_PATH = "/v1/artifacts/download";

export const artifactRoutes = [
  defineRoute({
    path: "/v1/jobs/artifacts",
    summary: "What a browser job left to look at (screenshots, a Playwright trace), oldest first; download each with /v1/artifacts/download.",
    input: z.object({ id: uuid("job") }),
    output: z.object({ artifacts: z.array(artifactOutput.extend({ download: z.object({ path: z.string(), body: z.object({ id: z.uuid() }) }) })) }),
    async handler({ deps, caller }, input) {
      const job = await jobs.findJob(deps.db, caller.tenantId, input.id);
      if (!job) throw jobNotFound(input.id);
      const rows = await store.listJobArtifacts(deps.db, caller.tenantId, input.id);
      return { artifacts: rows.map((row) => ({ ...summary(row), download: { path: DOWNLOAD_PATH, body: { id: row.id } } })) };
    },
  }),
  defineRoute({
    path: DOWNLOAD_PATH,
    summary: "One artifact of a job, its bytes base64'd in `data` (a PNG screenshot, or a Playwright trace zip for `npx playwright show-trace`).",
    input: z.object({ id: uuid("artifact") }),
    output: artifactOutput.extend({ encoding: z.literal("base64"), data: z.string().describe("The artifact's bytes, base64") }),
    async handler({ deps, caller }, input) {
      const row = await store.findArtifact(deps.db, caller.tenantId, input.id);
      if (!row) throw new AppError("NOT_FOUND", `Artifact ${input.id} not found. List a job's artifacts with /v1/jobs/artifacts.`);
      return { ...summary(row), encoding: "base64" as const, data: Buffer.from(row.bytes).toString("base64") };
    },
  }),
];
