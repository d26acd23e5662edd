package org.dipro.hapi;

import ca.uhn.fhir.batch2.jobs.config.Batch2JobsConfig;
import ca.uhn.fhir.jpa.batch2.JpaBatch2Config;
import ca.uhn.fhir.jpa.config.HapiJpaConfig;
import ca.uhn.fhir.jpa.config.r4.JpaR4Config;
import ca.uhn.fhir.jpa.subscription.channel.config.SubscriptionChannelConfig;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.boot.web.context.WebServerInitializedEvent;
import org.springframework.context.annotation.Import;
import org.springframework.context.event.EventListener;

/**
 * HAPI FHIR JPA server (FHIR R4) for the tests, serving the FHIR base at {@code /fhir}.
 *
 * <p>HAPI's own configuration does the work: {@link JpaR4Config} (DAOs, resource providers,
 * search), {@link HapiJpaConfig} (paging, search-result cache, full-text stubs) and the batch2
 * job framework ({@link JpaBatch2Config}, {@link Batch2JobsConfig}) that runs Bulk Data export,
 * whose work notifications travel over the in-process message broker of
 * {@link SubscriptionChannelConfig} (no subscriptions are enabled).
 * {@link FhirServerConfig} adds what an application must provide (storage settings, the JPA
 * entity manager, the REST servlet).
 */
@SpringBootApplication
@Import({
	JpaR4Config.class,
	HapiJpaConfig.class,
	JpaBatch2Config.class,
	Batch2JobsConfig.class,
	SubscriptionChannelConfig.class
})
public class HapiTestServerApplication {

	private static final Logger LOG = LoggerFactory.getLogger(HapiTestServerApplication.class);

	public static void main(String[] args) {
		SpringApplication.run(HapiTestServerApplication.class, args);
	}

	/** Logs one line the test fixture can wait for, with the port actually bound. */
	@EventListener
	public void onWebServerReady(WebServerInitializedEvent event) {
		LOG.info("HAPI FHIR test server listening on port {}", event.getWebServer().getPort());
	}
}
