import type { RouteDef } from "../http/route";

/** webhooks/create|list|update|delete|deliveries|redeliver. TODO(webhooks issue). */
export const webhookRoutes: RouteDef[] = [];
