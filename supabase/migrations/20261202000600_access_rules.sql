-- Access and eligibility decisions, each written once (issue 13). The worker, the token server,
-- the operator tools and the console call these functions instead of repeating the rule in
-- their own SQL or in Python. (Audit visibility is orchestrator.audit_readers, issue 12.)
-- Expand-only: new functions, nothing existing is replaced.

-- A device that can ring: active, and holding the token its platform rings with (the VoIP token
-- on iOS, the FCM token on Android). Decides which devices get ring deliveries and how many
-- ring-capable devices a callee has (no device: the call ends as `unavailable`).
create function orchestrator.ring_capable(p_device public.push_devices)
returns boolean
language sql stable parallel safe
set search_path = ''
as $$
  select p_device.disabled_at is null
     and ((p_device.platform = 'ios' and p_device.voip_token is not null)
          or (p_device.platform = 'android' and p_device.token is not null))
$$;

comment on function orchestrator.ring_capable(public.push_devices) is
  'True when the device can ring: not disabled, and holding its platform''s ring token.';

-- Why a delivery must not be sent (now), or null when it is sendable. `p_device` is null when
-- the device row was deleted. The sender voids a claimed delivery with this reason; the
-- operator's redrive and the console's redrive put back only failed deliveries that are
-- sendable. The order of the checks is the order of the reasons' precedence.
create function orchestrator.delivery_void_reason(
  p_kind text, p_expires_at timestamptz, p_call_status text, p_device public.push_devices
) returns text
language sql stable parallel safe
set search_path = ''
as $$
  select case
    when p_device.id is null then 'device_deleted'
    when p_device.disabled_at is not null then 'device_disabled'
    when p_kind = 'ring' and p_call_status is distinct from 'ringing' then 'call_ended'
    when p_expires_at <= now() then
      case when p_kind = 'ring' then 'deadline_passed' else 'expired' end
    when coalesce(case when p_device.platform = 'ios' and p_kind = 'ring'
                       then p_device.voip_token else p_device.token end, '') = ''
      then 'no_token'
  end
$$;

comment on function orchestrator.delivery_void_reason(text, timestamptz, text, public.push_devices)
  is 'Why a push delivery must not be sent, or null when it is sendable.';

-- The token grant: who may get an Agora token for which call in which state. Null = grant;
-- otherwise the refusal the token server answers with. A participant (caller or callee, as
-- `p_is_caller` says; a non-participant finds no call: p_status null) gets a token while the
-- call is accepted, and the caller also while it rings; the callee while it rings only with
-- CALLEE_TOKEN_WHILE_RINGING (issue 10). An accepted call past accepted_at + MAX_CALL_SECONDS
-- gets none (`p_expire_ts` is already capped there, so it is not after `p_issue_ts`).
create function orchestrator.token_refusal(
  p_status text, p_is_caller boolean, p_callee_while_ringing boolean,
  p_issue_ts bigint, p_expire_ts bigint
) returns text
language sql immutable parallel safe
set search_path = ''
as $$
  select case
    when p_status is null or p_status not in ('ringing', 'accepted', 'ended') then 'not_found'
    when p_status = 'ended' then 'ended'
    when p_status = 'ringing' and not p_is_caller and not p_callee_while_ringing
      then 'not_accepted'
    when not (p_expire_ts > p_issue_ts) then 'max_duration'
  end
$$;

comment on function orchestrator.token_refusal(text, boolean, boolean, bigint, bigint) is
  'Null when a participant may get an Agora token for the call now; else the refusal.';

revoke all on function orchestrator.ring_capable(public.push_devices),
  orchestrator.delivery_void_reason(text, timestamptz, text, public.push_devices),
  orchestrator.token_refusal(text, boolean, boolean, bigint, bigint)
  from public, anon, authenticated;
grant execute on function orchestrator.ring_capable(public.push_devices),
  orchestrator.delivery_void_reason(text, timestamptz, text, public.push_devices),
  orchestrator.token_refusal(text, boolean, boolean, bigint, bigint)
  to service_role;
