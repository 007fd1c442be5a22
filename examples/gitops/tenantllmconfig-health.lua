-- Argo CD health check for TenantLLMConfig (llm.byok.io). Argo CD has no generic health for
-- custom resources: install this as resource.customizations.health.llm.byok.io_TenantLLMConfig
-- in argocd-cm (see argocd-cm.yaml next to this file).
--   Progressing  the operator has not yet observed this generation, or Ready is not known
--   Healthy      Ready=True
--   Degraded     Ready=False, with the condition's reason and message
hs = {}
local status = obj.status
local generation = obj.metadata.generation or 0
if status == nil or status.observedGeneration == nil or status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for byok-operator to reconcile generation " .. tostring(generation)
  return hs
end
local ready = nil
if status.conditions ~= nil then
  for _, condition in ipairs(status.conditions) do
    if condition.type == "Ready" then
      ready = condition
    end
  end
end
if ready == nil or ready.status == "Unknown" then
  hs.status = "Progressing"
  hs.message = "Ready is not known yet"
  return hs
end
if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or "Ready"
  return hs
end
hs.status = "Degraded"
hs.message = (ready.reason or "NotReady") .. ": " .. (ready.message or "")
return hs
