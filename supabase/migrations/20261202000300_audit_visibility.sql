-- One visibility rule for audit events (issue 12). orchestrator.audit_readers() is the only
-- place that decides which participants may read an audit event: the call_audit RLS policy and
-- the MQTT relay (orchestrator/adapters/relay_sql.py) both call it, so the two paths cannot
-- drift apart again (the relay used to publish operator_action, which RLS hid).
--
-- Status and presence events: both participants. token_issued: the user it was issued to.
-- Device events: the callee. Everything else (operator_action, unknown future events): nobody,
-- until a migration adds it here. Erased participants (null ids) read nothing.
create function orchestrator.audit_readers(
  p_event text, p_actor_id uuid, p_caller_id uuid, p_callee_id uuid
) returns uuid[]
language sql immutable parallel safe
set search_path = ''
as $$
  select array_remove(
    case
      when p_event in ('call_created', 'call_accepted', 'call_ended',
                       'participant_joined', 'participant_left')
        then array[p_caller_id, p_callee_id]
      when p_event = 'token_issued' then array[p_actor_id]
      when p_event in ('push_sent', 'push_failed', 'device_pruned') then array[p_callee_id]
      else array[]::uuid[]
    end,
    null)
$$;

comment on function orchestrator.audit_readers(text, uuid, uuid, uuid) is
  'Who may read an audit event: used by the call_audit RLS policy and by the MQTT relay.';

revoke all on function orchestrator.audit_readers(text, uuid, uuid, uuid) from public;
grant execute on function orchestrator.audit_readers(text, uuid, uuid, uuid)
  to authenticated, service_role;

-- The policy keeps its name and role; only its rule now comes from the function.
alter policy call_audit_select on public.call_audit
  using (exists (
    select 1 from public.calls c
    where c.id = call_audit.call_id
      and (select auth.uid()) = any (orchestrator.audit_readers(
        call_audit.event, call_audit.actor_id, c.caller_id, c.callee_id))
  ));
