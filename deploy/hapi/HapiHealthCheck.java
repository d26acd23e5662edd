import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;

/**
 * Docker health check for the HAPI FHIR image (hapiproject/hapi), which is distroless: no shell,
 * no curl, only {@code java}. Exits 0 when the URL (default: Spring Boot Actuator's
 * {@code http://127.0.0.1:8080/actuator/health}, enabled by the jpaserver-starter's
 * application.yaml) answers 200, else 1. Actuator answers 503 while a health indicator, the
 * database connection among them, is down.
 *
 * <p>Image v8.10.0-1 and later ship such a class themselves ({@code java -cp /app HealthCheck});
 * v8.8.0-1, the version the tests build, does not.
 */
public final class HapiHealthCheck {

  private HapiHealthCheck() {}

  public static void main(String[] args) {
    String url = args.length > 0 ? args[0] : "http://127.0.0.1:8080/actuator/health";
    try {
      HttpClient client = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(2)).build();
      HttpRequest request =
          HttpRequest.newBuilder(URI.create(url)).timeout(Duration.ofSeconds(5)).GET().build();
      int status = client.send(request, HttpResponse.BodyHandlers.discarding()).statusCode();
      if (status == 200) {
        System.exit(0);
      }
      System.err.println("health check: HTTP " + status + " from " + url);
    } catch (Exception e) {
      System.err.println("health check: " + url + ": " + e);
    }
    System.exit(1);
  }
}
